from werkzeug.datastructures import ImmutableMultiDict

from odoo import models
from odoo.http import request


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _pre_dispatch(cls, rule, args):
        if rule.endpoint.routing.get("qimen_raw_request"):
            # The Qimen callback reads its query string and its body itself, the body
            # with a hard cap. Odoo's dispatcher would else parse a form body whole (up
            # to 10 MB, HTML 413 past it) and pass query names as Python arguments; and
            # the modules' pre-dispatch steps would parse the signed query string for
            # their own parameters (debug, signup token, editor flags), none of which a
            # call of the ERP carries: emptied before them.
            httprequest = request.httprequest
            httprequest.args = httprequest.form = httprequest.files = ImmutableMultiDict()
        return super()._pre_dispatch(rule, args)
