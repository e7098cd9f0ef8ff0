import json
from urllib.parse import urlencode

from odoo.tests import HttpCase, tagged

from ..qimen.responses import parse_reply
from ..qimen.sandbox import build_push
from ..qimen.signing import sign
from .common import APP_KEY, QimenPosCase

CALLBACK_SECRET = "回调-callback-secret-7"
ORDER_FIELDS = [
    "qimen_erp_reported",
    "state",
    "qimen_erp_status",
    "qimen_cancelled",
    "qimen_void_reason",
    "qimen_delivery",
    "qimen_finished",
    "qimen_shipping_sn",
    "write_date",
]


@tagged("post_install", "-at_install")
class QimenCallbackCase(QimenPosCase, HttpCase):
    """A paid order, a callback secret, and helpers to call /qimen/callback signed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company.write({"qimen_callback_secret": CALLBACK_SECRET})
        cls.Log = cls.env["qimen.callback.log"]

    def setUp(self):
        super().setUp()
        self.order = self.paid_order()
        self.bill = self.order.qimen_bill_code

    # helpers ---------------------------------------------------------------------------
    def call(
        self,
        params=None,
        secret=CALLBACK_SECRET,
        body_kind="json",
        sign_method="md5",
        query_changes=None,
        body=None,
        **kwargs,
    ):
        params = {"orderBillCode": self.bill, "status": "1"} if params is None else params
        fmt = "xml" if body_kind == "xml" else "json"
        query, raw, ctype = build_push(
            params,
            secret,
            APP_KEY,
            customerid="STORE_ERP_01",
            sign_method=sign_method,
            body_kind=body_kind,
            fmt=fmt,
            **kwargs,
        )
        changes = dict(query_changes or {})
        forced_sign = changes.pop("sign", "keep")
        if changes:  # signed like the gateway would sign the changed query
            query.update(changes)
            query = {k: v for k, v in query.items() if v is not None and k != "sign"}
            signed_params = {**query, **params} if body_kind == "form" else query
            query["sign"] = sign(
                signed_params, secret, sign_method, None if body_kind == "form" else raw
            )
        if forced_sign != "keep":
            query.pop("sign")
        self.last_call = (query, raw if body is None else body, ctype)
        return self.send(*self.last_call)

    def send(self, query, body, content_type):
        """POST a call as it is (e.g. ``self.last_call`` again: a replay)."""
        response = self.url_open(
            "/qimen/callback?" + urlencode(query),
            data=body,
            headers={"Content-Type": content_type},
        )
        return response, parse_reply(response.content, response.status_code)

    def _chinese(self):
        self.env["res.lang"]._activate_lang("zh_CN")
        self.env["ir.module.module"]._load_module_terms(["pos_qimen_sync"], ["zh_CN"])

    def snapshot(self):
        self.order.invalidate_recordset()
        return self.order.read(ORDER_FIELDS)[0], len(self.order.message_ids)

    def assert_rejected(self, response, reply, code, http_status, before):
        self.assertEqual(response.status_code, http_status, response.text)
        self.assertEqual((reply.flag, reply.code), ("failure", code), response.text)
        self.assertFalse(response.headers["Content-Type"].startswith("text/html"))
        self.assertEqual(self.snapshot(), before, "a rejected call writes nothing to the order")
        log = self.Log.search([], limit=1)
        self.assertEqual((log.result, log.code, log.http_status), ("rejected", code, http_status))
        self.assertNotIn(CALLBACK_SECRET, json.dumps(log.read()[0], default=str))
