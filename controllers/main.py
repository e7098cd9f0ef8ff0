import logging
from urllib.parse import urlencode

from odoo import http
from odoo.http import request

from ..qimen.client import MaskSignatures
from ..qimen.inbound import MAX_BODY_BYTES

CALLBACK_ROUTE = "/qimen/callback"
# Odoo's access log prints each request line, query string and its sign included
logging.getLogger("werkzeug").addFilter(MaskSignatures())


class QimenCallbackController(http.Controller):
    """The URL registered in the Qimen console: the ERP's calls to this store."""

    @http.route(
        CALLBACK_ROUTE,
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        save_session=False,
    )
    def qimen_callback(self, **_params):
        httprequest = request.httprequest
        if httprequest.method != "POST":
            body = None
        elif (httprequest.content_length or 0) > MAX_BODY_BYTES:
            body = False  # refused unread
        elif httprequest.mimetype == "application/x-www-form-urlencoded":
            # Odoo has already parsed (consumed) a form body: re-encode its fields
            body = urlencode(list(httprequest.form.items(multi=True))).encode()
        else:
            body = httprequest.get_data()  # size checked again by parse_call (chunked bodies)
        status, reply, content_type = (
            request.env["qimen.callback.log"]
            .sudo()
            ._handle_call(
                httprequest.query_string.decode("latin-1"),
                body,
                httprequest.mimetype,
                httprequest.remote_addr,
            )
        )
        return request.make_response(reply, headers=[("Content-Type", content_type)], status=status)
