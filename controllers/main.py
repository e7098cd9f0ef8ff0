import logging

from werkzeug.exceptions import HTTPException

from odoo import SUPERUSER_ID, http
from odoo.http import request
from odoo.service.model import MAX_TRIES_ON_CONCURRENCY_FAILURE

from ..qimen.client import MaskSignatures
from ..qimen.inbound import MAX_BODY_BYTES, InboundError, check_body_length, read_body

CALLBACK_ROUTE = "/qimen/callback"
# What the request keeps between Odoo's tries of it (after a serialization failure
# Odoo runs the request again, and the body stream is read only once).
BODY_KEY = "pos_qimen_sync.body"
TRIES_KEY = "pos_qimen_sync.tries"
_logger = logging.getLogger(__name__)
# Odoo's access log prints each request line, query string and its sign included
logging.getLogger("werkzeug").addFilter(MaskSignatures())


class QimenCallbackController(http.Controller):
    """The URL registered in the Qimen console: the ERP's calls to this store.

    Thin on purpose: it reads the request (the body with a hard cap) and lets
    ``qimen.callback.handler._handle_call`` verify, route, apply, log and answer.

    ``auth="none"``: the call authenticates itself (its signature, checked before anything
    of an order is read), not with a user; it acts as the superuser (OdooBot, the author
    of its notes), as ``auth="public"`` then ``sudo()`` would, without reading the public
    user on every call. ``readonly=False``: Odoo 18 runs an ``auth="none"`` route in a
    read-only transaction first, and the call writes (its log row at least)."""

    @http.route(
        CALLBACK_ROUTE,
        type="http",
        auth="none",
        readonly=False,
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
                environ[BODY_KEY] = _read_body(httprequest)
            body = environ[BODY_KEY]
        handler = request.env(user=SUPERUSER_ID)["qimen.callback.handler"]
        status, reply, content_type = handler._handle_call(
            httprequest.method,
            httprequest.query_string,
            body,
            httprequest.mimetype,
            httprequest.remote_addr,
            last_try=tries >= MAX_TRIES_ON_CONCURRENCY_FAILURE,
        )
        headers = [("Content-Type", content_type)]
        if status == 405:
            headers.append(("Allow", "POST"))
        if isinstance(body, InboundError):
            headers.append(("Connection", "close"))  # the rest of the body is left unread
        return request.make_response(reply, headers=headers, status=status)


def _read_body(httprequest):
    """The body, or the :class:`InboundError` that refuses it, answered in Qimen's format:
    too large (checked before the stream is touched: werkzeug 3 refuses a body over its
    own limit with an HTML page), or unreadable (a broken chunked encoding, a client
    gone before the end of its Content-Length)."""
    try:
        check_body_length(httprequest.content_length, MAX_BODY_BYTES)
        return read_body(_input_stream(httprequest), MAX_BODY_BYTES)
    except InboundError as exc:
        return exc
    except (OSError, HTTPException) as exc:
        _logger.info("Qimen callback: unreadable body: %s", type(exc).__name__)
        return InboundError(41, "isv.invalid-parameter", "body could not be read", 400)


def _input_stream(httprequest):
    """werkzeug's body stream (bounded by the Content-Length, or chunked). Odoo's
    HTTPRequest proxies only ``get_data()``, which reads a body whole; bus/websocket.py
    reaches the wrapped request the same way."""
    return httprequest._HTTPRequest__wrapped.stream
