import logging

from odoo import http
from odoo.http import request
from odoo.service.model import MAX_TRIES_ON_CONCURRENCY_FAILURE

from ..qimen.client import MaskSignatures
from ..qimen.inbound import MAX_BODY_BYTES, InboundError, read_body

CALLBACK_ROUTE = "/qimen/callback"
# What the request keeps between Odoo's tries of it (after a serialization failure
# Odoo runs the request again, and the body stream is read only once).
BODY_KEY = "pos_qimen_sync.body"
TRIES_KEY = "pos_qimen_sync.tries"
# Odoo's access log prints each request line, query string and its sign included
logging.getLogger("werkzeug").addFilter(MaskSignatures())


class QimenCallbackController(http.Controller):
    """The URL registered in the Qimen console: the ERP's calls to this store.

    Thin on purpose: it reads the request (the body with a hard cap) and lets
    ``qimen.callback.log._handle_call`` verify, apply, log and answer."""

    @http.route(
        CALLBACK_ROUTE,
        type="http",
        auth="public",
        csrf=False,
        save_session=False,
        qimen_raw_request=True,  # see ir.http: nothing parses the query or body before us
    )
    def qimen_callback(self):
        # no ``methods=`` on the route: werkzeug would answer other methods with HTML
        httprequest = request.httprequest
        environ = httprequest.environ
        environ[TRIES_KEY] = tries = environ.get(TRIES_KEY, 0) + 1
        body = None
        if httprequest.method == "POST":
            if BODY_KEY not in environ:
                try:
                    environ[BODY_KEY] = read_body(
                        _input_stream(httprequest), MAX_BODY_BYTES, httprequest.content_length
                    )
                except InboundError as exc:
                    environ[BODY_KEY] = exc
            body = environ[BODY_KEY]
        status, reply, content_type = (
            request.env["qimen.callback.log"]
            .sudo()
            ._handle_call(
                httprequest.method,
                httprequest.query_string,
                body,
                httprequest.mimetype,
                httprequest.remote_addr,
                last_try=tries >= MAX_TRIES_ON_CONCURRENCY_FAILURE,
            )
        )
        headers = [("Content-Type", content_type)]
        if status == 405:
            headers.append(("Allow", "POST"))
        if isinstance(body, InboundError):
            headers.append(("Connection", "close"))  # the rest of the body is left unread
        return request.make_response(reply, headers=headers, status=status)


def _input_stream(httprequest):
    """werkzeug's body stream (bounded by the Content-Length, or chunked). Odoo's
    HTTPRequest proxies only ``get_data()``, which reads a body whole; bus/websocket.py
    reaches the wrapped request the same way."""
    return httprequest._HTTPRequest__wrapped.stream
