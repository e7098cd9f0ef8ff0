import json
import logging
from datetime import datetime, timedelta, timezone
from unittest.mock import patch
from urllib.parse import urlencode

from odoo.sql_db import Cursor
from odoo.tests import tagged

from ..qimen.responses import parse_reply
from ..qimen.sandbox import build_push, push
from ..qimen.signing import sign
from ..qimen.timeutil import to_gmt8
from ..qimen.xmlsafe import parse_xml
from .common import APP_KEY
from .inbound_common import CALLBACK_SECRET, QimenCallbackCase


@tagged("post_install", "-at_install")
class TestInboundCallback(QimenCallbackCase):
    # statuses --------------------------------------------------------------------------
    def test_each_status_updates_the_order(self):
        cases = [
            (
                {
                    "status": "1",
                    "confirm": "1",
                    "confirmor": "ERP张三",
                    "confirmDate": "2024-01-01 11:59:00",
                },
                {"confirm": "1", "confirmor": "ERP张三", "confirmDate": "2024-01-01 11:59:00"},
            ),
            (
                {
                    "status": "2",
                    "deliveryDate": "2024-01-02 08:00:00",
                    "shippingCode": "SF",
                    "shippingSn": "SF1234567890",
                    "fhck_code": "WH-01",
                    "mx_list": [{"sku": "SKU-1", "goods_number": "2"}],
                },
                {
                    "deliveryDate": "2024-01-02 08:00:00",
                    "shippingCode": "SF",
                    "shippingSn": "SF1234567890",
                    "fhck_code": "WH-01",
                },
            ),
            (
                {"status": "4", "finishDate": "2024-01-03 20:00:00"},
                {"finishDate": "2024-01-03 20:00:00"},
            ),
            ({"status": "5", "extendProps": '{"note": "其他"}'}, {}),
        ]
        for params, expected in cases:
            with self.subTest(status=params["status"]):
                response, reply = self.call(dict(params, orderBillCode=self.bill))
                self.assertEqual(response.status_code, 200, response.text)
                self.assertTrue(reply.ok, response.text)
                self.assertEqual(reply.code, "1")
                self.order.invalidate_recordset()
                status = "4" if params["status"] == "5" else params["status"]
                self.assertEqual(self.order.qimen_erp_status, status)
                for name, value in expected.items():  # what the ERP said, apart
                    self.assertEqual(self.order.qimen_erp_reported[name], value, name)
                self.assertNotIn("extendProps", self.order.qimen_erp_reported)
                log = self.Log.search([], limit=1)
                self.assertEqual(
                    (log.result, log.order_id, log.status),
                    (
                        "recorded" if params["status"] == "5" else "applied",
                        self.order,
                        params["status"],
                    ),
                )
        self.assertIn(
            "SF1234567890",
            self.order.message_ids[0].body
            + self.order.message_ids[1].body
            + self.order.message_ids[2].body,
        )
        self.assertEqual(self.Job.search_count([("event", "=", "void")]), 0, "no echo")
        # the store's own facts are the store's: the ERP's are kept apart
        self.assertEqual(
            (self.order.qimen_confirmor, self.order.qimen_finished, self.order.qimen_shipping_sn),
            (self.order._qimen_cashier(), False, False),
        )
        self.assertIn("Tracking Number: SF1234567890", self.order.qimen_erp_reported_text)

    def test_erp_times_are_shown_in_the_readers_zone_or_labelled(self):
        """The ERP sends China time; Odoo shows times in its user's zone."""
        self.call({"orderBillCode": self.bill, "status": "4", "finishDate": "2024-01-03 20:00:00"})
        self.order.invalidate_recordset()
        paris = self.order.with_context(tz="Europe/Paris").qimen_erp_reported_text
        self.assertIn("13:00:00", paris)  # 20:00 GMT+8 is 12:00 UTC, 13:00 in Paris
        self.assertNotIn("20:00", paris)
        shanghai = self.order.with_context(tz="Asia/Shanghai").qimen_erp_reported_text
        self.assertIn("20:00:00", shanghai)
        note = self.order.message_ids.filtered(lambda m: "2024-01-03" in str(m.body))
        self.assertIn("2024-01-03 20:00:00 (GMT+8)", str(note[:1].body), "a note: labelled")

    def test_void_of_a_draft_cancels_it_without_echo(self):
        draft = self.draft_order()
        response, reply = self.call(
            {
                "orderBillCode": draft.qimen_bill_code,
                "status": "3",
                "canceler": "ERP李四",
                "cancleDate": to_gmt8(datetime.now(timezone.utc)),
                "zf_type": "0",
                "zf_message": "不想买了",
            }
        )
        self.assertTrue(reply.ok, response.text)
        draft.invalidate_recordset()
        self.assertEqual(draft.state, "cancel")
        reported = draft.qimen_erp_reported
        self.assertEqual(
            (reported["zf_type"], reported["zf_message"], reported["canceler"]),
            ("0", "不想买了", "ERP李四"),
        )
        self.assertEqual((draft.qimen_erp_status, draft.qimen_cancelled), ("3", False))
        self.assertFalse(self.jobs(draft), "the ERP is not told what it just said")
        self.assertIn("不想买了", draft.message_ids[0].body)

    def test_void_of_a_paid_order_asks_the_manager(self):
        response, reply = self.call(
            {"orderBillCode": self.bill, "status": "3", "zf_type": "1", "zf_message": "缺货"}
        )
        self.assertTrue(reply.ok, response.text)
        self.order.invalidate_recordset()
        self.assertEqual(self.order.state, "paid", "Odoo cannot cancel a paid order")
        self.assertEqual(self.order.qimen_erp_status, "3")
        activity = self.order.activity_ids
        self.assertEqual(len(activity), 1)
        self.assertIn("refund", activity.summary)
        self.assertIn("缺货", str(activity.note))
        self.assertTrue(activity.user_id.has_group("point_of_sale.group_pos_manager"))
        # a partial refund leaves it open; the refund of the rest closes it with a note
        first = self.order._refund()
        first.lines.write({"qty": -1})
        first.lines._onchange_amount_line_all()
        first._compute_prices()
        self.make_payment(first, self.cash_pm1, first.amount_total)
        self.assertTrue(activity.exists() and activity.active, "half refunded: still to do")
        rest = self.order._refund()
        self.make_payment(rest, self.cash_pm1, rest.amount_total)
        self.assertFalse(self.order.activity_ids, "done once the order is refunded")
        done = self.order.message_ids.filtered(lambda m: rest.name in str(m.body))
        self.assertEqual(len(done), 1)
        self.assertIn("Refunded", str(done.body))
        self.assertNotIn("void", self.jobs(self.order).mapped("event"), "the ERP voided it")

    # what a call is: replays, new content, transitions ----------------------------------
    def test_a_call_runs_once_in_a_read_write_transaction(self):
        """Odoo 18 runs an ``auth="none"`` route in a read-only transaction first: a call
        would fail there on its first write, log an error, and run again."""
        params = {"orderBillCode": self.bill, "status": "2", "shippingSn": "RW-1"}
        with (
            self.assertNoLogs("odoo.http", "WARNING"),
            self.assertNoLogs("odoo.addons.pos_qimen_sync", "WARNING"),
        ):
            self.assertEqual(self.call(params)[1].message, "OK")

    def test_a_replay_changes_nothing(self):
        params = {"orderBillCode": self.bill, "status": "3", "zf_message": "第一次"}
        self.assertTrue(self.call(params)[1].ok)
        before = self.snapshot()
        _response, reply = self.send(*self.last_call)  # the gateway sends it again
        self.assertEqual((reply.ok, reply.message), (True, "Already applied"))
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(len(self.order.activity_ids), 1)
        self.assertEqual(self.Log.search([], limit=1).result, "duplicate")
        # the same request_id with a new timestamp (a gateway retry signed again)
        request_id = self.last_call[0]["request_id"]
        _response, reply = self.call(params, query_changes={"request_id": request_id})
        self.assertEqual((reply.ok, reply.message), (True, "Already applied"))
        self.assertEqual(self.snapshot(), before)

    def test_a_replay_without_request_id_changes_nothing(self):
        params = {"orderBillCode": self.bill, "status": "2", "shippingSn": "SN-1"}
        self.assertTrue(self.call(params, query_changes={"request_id": None})[1].ok)
        before = self.snapshot()
        self.assertEqual(self.send(*self.last_call)[1].message, "Already applied")
        self.assertEqual(self.snapshot(), before)

    def test_new_content_with_the_same_status_is_applied(self):
        for number in ("SF-1", "SF-2-CORRECTED"):
            params = {"orderBillCode": self.bill, "status": "2", "shippingSn": number}
            self.assertEqual(self.call(params)[1].message, "OK")
            self.order.invalidate_recordset()
            self.assertEqual(self.order.qimen_erp_reported["shippingSn"], number)
        notes = len(self.order.message_ids)
        for note in ("第一个", "第二个"):
            params = {"orderBillCode": self.bill, "status": "5", "extendProps": note}
            _response, reply = self.call(params)
            self.assertTrue(reply.ok)
            self.assertIn(note, self.order.message_ids[0].body)
        self.assertEqual(len(self.order.message_ids), notes + 2)
        self.assertEqual(self.Log.search([], limit=2).mapped("result"), ["recorded"] * 2)

    def test_the_note_is_the_note_message_log_logs(self):
        """The call's note is logged in one statement: it is what ``_message_log`` logs
        (an internal note by OdooBot, no notification), in the order's chatter."""
        before = self.order.message_ids
        params = {"orderBillCode": self.bill, "status": "2", "shippingSn": "SF-NOTE"}
        self.assertEqual(self.call(params)[1].message, "OK")
        note = self.order.message_ids - before  # the order's messages in cache invalidated
        self.assertEqual(len(note), 1)
        reference = self.order._message_log(
            body=note.body,
            author_id=self.env.ref("base.partner_root").id,
            email_from=False,
        )
        names = [
            "model",
            "res_id",
            "body",
            "message_type",
            "subtype_id",
            "is_internal",
            "author_id",
            "email_from",
            "reply_to",
            "record_name",
            "subject",
            "email_add_signature",
            "partner_ids",
            "notification_ids",
            "attachment_ids",
            "tracking_value_ids",
            "parent_id",
        ]
        self.assertEqual(note.read(names)[0] | {"id": 0}, reference.read(names)[0] | {"id": 0})
        self.assertIn("SF-NOTE", str(note.body))
        self.assertIn("-openerp-message-notify@", note.message_id)  # as Odoo makes them
        self.assertNotEqual(note.message_id, reference.message_id)

    def test_the_note_goes_with_the_log_row_in_one_round_trip(self):
        """The call's note and its log row are two INSERTs sent in one execute."""
        executed = []
        execute = Cursor.execute

        def recording(cr, query, params=None, log_exceptions=True):
            executed.append(str(getattr(query, "code", query)))
            return execute(cr, query, params, log_exceptions)

        params = {"orderBillCode": self.bill, "status": "2", "shippingSn": "SF-ONE"}
        with patch.object(Cursor, "execute", recording):
            self.assertEqual(self.call(params)[1].message, "OK")
        notes = [query for query in executed if 'INSERT INTO "mail_message"' in query]
        self.assertEqual(len(notes), 1, executed)
        self.assertIn('INSERT INTO "qimen_callback_log"', notes[0])
        self.assertIn("SF-ONE", str(self.order.message_ids[0].body))
        self.assertEqual(self.Log.search([], limit=1).result, "applied")

    def test_a_failed_call_is_applied_when_replayed(self):
        params = {"orderBillCode": "ERP-LATE-1", "status": "2", "shippingSn": "LATE"}
        _response, reply = self.call(params)
        self.assertEqual((reply.flag, reply.code), ("failure", "0"))
        self.order.qimen_bill_code = "ERP-LATE-1"  # the order reaches the store
        _response, reply = self.send(*self.last_call)  # the gateway retries the call
        self.assertEqual((reply.ok, reply.message), (True, "OK"))
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_reported["shippingSn"], "LATE")

    def test_a_void_is_final(self):
        self.assertTrue(self.call({"orderBillCode": self.bill, "status": "3"})[1].ok)
        self.order.invalidate_recordset()
        voided_on = self.order.qimen_erp_status_date
        self.assertTrue(voided_on)
        before = self.snapshot()[0]
        del before["write_date"]  # the ERP's latest report is written (its own fields)
        for status in ("2", "1", "4", "5"):
            with self.subTest(status=status):
                params = {"orderBillCode": self.bill, "status": status, "shippingSn": "X"}
                _response, reply = self.call(params)
                self.assertEqual(
                    (reply.ok, reply.message), (True, "Recorded; the order is unchanged")
                )
                after = self.snapshot()[0]
                del after["write_date"]
                self.assertEqual(after, before, "the order is unchanged")
                self.assertEqual(self.order.qimen_erp_last_status, status)
                self.assertEqual(self.Log.search([], limit=1).result, "recorded")
        self.order.invalidate_recordset()
        self.assertEqual((self.order.qimen_erp_status, self.order.qimen_finished), ("3", False))
        self.assertEqual(self.order.qimen_erp_status_date, voided_on)
        self.assertIn("not applied: it is voided", self.order.message_ids[1].body)
        # a corrected void reason is new content of the same status
        self.call({"orderBillCode": self.bill, "status": "3", "zf_message": "更正的原因"})
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_reported["zf_message"], "更正的原因")
        self.assertEqual(len(self.order.activity_ids), 1, "the manager is asked once")

    def test_a_finish_is_not_undone_but_may_be_voided(self):
        self.call({"orderBillCode": self.bill, "status": "2"})
        self.call({"orderBillCode": self.bill, "status": "4"})
        self.call({"orderBillCode": self.bill, "status": "1", "confirmor": "迟到"})
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_status, "4")
        self.assertNotIn("confirmor", self.order.qimen_erp_reported or {})
        self.call({"orderBillCode": self.bill, "status": "3", "zf_type": "0"})
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_status, "3")

    def test_late_confirmation_details_keep_the_status(self):
        self.call({"orderBillCode": self.bill, "status": "2"})
        self.call({"orderBillCode": self.bill, "status": "1", "confirmor": "ERP王五"})
        self.order.invalidate_recordset()
        self.assertEqual(
            (self.order.qimen_erp_status, self.order.qimen_erp_reported["confirmor"]),
            ("2", "ERP王五"),
        )

    # the readers' language ---------------------------------------------------------------
    def test_notes_are_in_the_managers_language_with_field_labels(self):
        """The readers of the notes are the company's POS managers: their language, not
        the company's (English here)."""
        self._chinese()
        self.assertEqual(self.company.partner_id.lang, "en_US")
        managers = self.company._qimen_managers()
        self.assertTrue(managers)
        managers[0].lang = "zh_CN"
        params = {"orderBillCode": self.bill, "status": "2", "shippingCode": "SF"}
        self.assertTrue(self.call(params)[1].ok)
        body = str(self.order.message_ids[0].body)
        self.assertIn("ERP 上报此订单状态为：已取货。", body)  # noqa: RUF001
        self.assertIn("快递公司编码: SF", body)
        self.assertNotIn("shippingCode", body)

    def test_a_serialization_failure_runs_the_call_again_with_its_body(self):
        """Odoo runs a request again after a serialization failure: the body, read once
        from the stream, is used again, and the call is applied and logged once."""
        order_model = type(self.env["pos.order"])
        original, tries = order_model._qimen_handle_notification_data, []

        def conflict_once(order, params):
            tries.append(params["shippingSn"])
            if len(tries) == 1:  # what PostgreSQL raises when another call won the row
                order.env.cr.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'concurrent update' "
                    "USING ERRCODE = 'serialization_failure'; END $$",
                    log_exceptions=False,
                )
            return original(order, params)

        logs_before = self.Log.search_count([])
        with (
            patch.object(order_model, "_qimen_handle_notification_data", conflict_once),
            self.assertLogs("odoo.service.model", logging.INFO) as logs,
        ):
            response, reply = self.call(
                {"orderBillCode": self.bill, "status": "2", "shippingSn": "RETRY 1"}
            )
        self.assertTrue(reply.ok, response.text)
        self.assertEqual(tries, ["RETRY 1", "RETRY 1"])
        self.assertIn("serialization_failure", logs.output[0].lower())
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_reported["shippingSn"], "RETRY 1")
        self.assertEqual(self.Log.search_count([]), logs_before + 1)
        self.assertEqual(self.Log.search([], limit=1).result, "applied")

    def test_notes_use_field_labels(self):
        params = {
            "orderBillCode": self.bill,
            "status": "3",
            "zf_type": "0",
            "shippingSn": "T1",
            "cancle": "1",
        }
        self.assertTrue(self.call(params)[1].ok)
        body = str(self.order.message_ids[0].body)
        self.assertIn("Void Type: Customer return", body)
        self.assertIn("Tracking Number: T1", body)
        voided = self.order._fields["qimen_cancelled"].string
        self.assertIn(f"{voided}: Yes", body)
        self.assertNotIn("zf_type", body)
        self.assertNotIn("cancle", body)

    def test_todo_is_in_the_language_of_its_user(self):
        self._chinese()
        self.env.ref("point_of_sale.group_pos_manager").users.write({"lang": "zh_CN"})
        self.assertTrue(self.call({"orderBillCode": self.bill, "status": "3"})[1].ok)
        activity = self.order.activity_ids
        self.assertEqual(activity.summary, "已在 ERP 中作废：请为此订单退款")  # noqa: RUF001
        self.assertIn("未填写原因", str(activity.note))

    # formats and sign methods ----------------------------------------------------------
    def test_bodies_and_sign_methods(self):
        for body_kind in ("json", "xml", "form"):
            for sign_method in ("md5", "hmac", "hmac-sha256"):
                with self.subTest(body=body_kind, sign=sign_method):
                    order = self.paid_order()
                    response, reply = self.call(
                        {"orderBillCode": order.qimen_bill_code, "status": "2"},
                        body_kind=body_kind,
                        sign_method=sign_method,
                    )
                    self.assertEqual(response.status_code, 200, response.text)
                    self.assertTrue(reply.ok, response.text)
                    order.invalidate_recordset()
                    self.assertEqual(order.qimen_erp_status, "2")
                    if body_kind == "xml":
                        root = parse_xml(response.content)
                        self.assertEqual(root.tag, "response")
                        self.assertEqual(root.findtext("code"), "1")
                    else:
                        self.assertEqual(response.json()["response"]["flag"], "success")

    def test_variants_of_the_gateway(self):
        response, reply = self.call(
            {"orderBillCode": self.bill, "status": "2", "customerid": "STORE_ERP_01"},
            method="taobao.pos.update.salesorder",
            query_changes={"customerid": None, "target_appkey": None, "target_app_key": APP_KEY},
        )
        self.assertTrue(reply.ok, response.text)
        response, reply = self.call(
            {"orderBillCode": self.bill, "status": "1"}, method="qimen.taobao.pos.salesorder.update"
        )
        self.assertTrue(reply.ok, response.text)

    def test_sandbox_drives_the_endpoint_end_to_end(self):
        status, reply = push(
            self.base_url() + "/qimen/callback",
            {"orderBillCode": self.bill, "status": "4"},
            CALLBACK_SECRET,
            APP_KEY,
            customerid="STORE_ERP_01",
        )
        self.assertEqual((status, reply.ok), (200, True))
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_status, "4")

    # hostile and invalid input ---------------------------------------------------------
    def test_rejections_write_nothing(self):
        now = datetime.now(timezone.utc)
        body = json.dumps({"orderBillCode": self.bill, "status": "3"}).encode()
        cases = {
            "wrong signature": ({"secret": "wrong"}, "25", 401),
            "missing signature": ({"query_changes": {"sign": None}}, "24", 400),
            "tampered body": ({"body": body}, "25", 401),
            "stale timestamp": ({"timestamp": to_gmt8(now - timedelta(minutes=11))}, "31", 400),
            "future timestamp": ({"timestamp": to_gmt8(now + timedelta(minutes=11))}, "31", 400),
            "unknown app key": ({"query_changes": {"app_key": "nobody"}}, "29", 403),
            "missing app key": (
                {"query_changes": {"app_key": None, "target_appkey": None}},
                "28",
                403,
            ),
            "unknown customerid": ({"query_changes": {"customerid": "ELSEWHERE"}}, "41", 403),
            "unknown method": ({"method": "qimen.taobao.other.api"}, "22", 400),
        }
        for name, (kwargs, code, http_status) in cases.items():
            with self.subTest(name):
                before = self.snapshot()
                params = {"orderBillCode": self.bill, "status": "3", "zf_message": "攻击"}
                response, reply = self.call(params, **kwargs)
                self.assert_rejected(response, reply, code, http_status, before)

    def test_bad_values_are_rejected(self):
        for params, field in (
            ({"status": "9"}, "status"),
            ({"status": "3", "zf_type": "7"}, "zf_type"),
            ({"status": "2", "deliveryDate": "2024/01/01"}, "deliveryDate"),
            ({"status": ""}, "status"),
        ):
            with self.subTest(field=field):
                before = self.snapshot()
                response, reply = self.call(dict(params, orderBillCode=self.bill))
                self.assert_rejected(response, reply, "41", 400, before)
                self.assertIn(field, reply.message)

    def test_malformed_and_hostile_bodies(self):
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<request><orderBillCode>&x;</orderBillCode><status>3</status></request>"
        )
        laughs = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;">]>'
            b"<request><status>&c;</status></request>"
        )
        for name, body, body_kind in (
            ("malformed json", b'{"orderBillCode": "x",', "json"),
            ("json array", b"[1, 2]", "json"),
            ("malformed xml", b"<request><status>3</request>", "xml"),
            ("xxe", xxe, "xml"),
            ("billion laughs", laughs, "xml"),
            ("bad mx_list", b'{"orderBillCode": "X", "status": "2", "mx_list": [1]}', "json"),
            ("deep json", b"[" * 100_000, "json"),
        ):
            with self.subTest(name):
                before = self.snapshot()
                # signed over the hostile body: the parser, not the signature, refuses it
                query, _raw, ctype = build_push(
                    {},
                    CALLBACK_SECRET,
                    APP_KEY,
                    customerid="STORE_ERP_01",
                    body_kind=body_kind,
                    fmt="xml" if body_kind == "xml" else "json",
                )
                query["sign"] = sign(
                    {k: v for k, v in query.items() if k != "sign"}, CALLBACK_SECRET, "md5", body
                )
                response = self.url_open(
                    "/qimen/callback?" + urlencode(query),
                    data=body,
                    headers={"Content-Type": ctype},
                )
                reply = parse_reply(response.content, response.status_code)
                self.assert_rejected(response, reply, "41", 400, before)
                self.assertNotIn(b"root:", response.content)

    def test_everything_in_a_form_and_the_signature_masked_in_the_log(self):
        form = {
            "method": "qimen.taobao.pos.update.salesorder",
            "app_key": APP_KEY,
            "customerid": "STORE_ERP_01",
            "sign_method": "md5",
            "format": "json",
            "timestamp": to_gmt8(datetime.now(timezone.utc)),
            "orderBillCode": self.bill,
            "status": "2",
            "shippingSn": "YT 123",
        }
        form["sign"] = sign(form, CALLBACK_SECRET)
        response = self.url_open("/qimen/callback", data=form)  # form-encoded by requests
        self.assertTrue(parse_reply(response.content).ok, response.text)
        log = self.Log.search([], limit=1)
        self.assertEqual(log.result, "applied")
        self.assertNotIn(form["sign"], log.body)
        self.assertIn("sign=%2A%2A%2A", log.body)
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_reported["shippingSn"], "YT 123")

    def test_oversized_body(self):
        before = self.snapshot()
        big = json.dumps(
            {"orderBillCode": self.bill, "status": "3", "zf_message": "大" * 200_000}
        ).encode()
        response, reply = self.call(body=big)
        self.assert_rejected(response, reply, "41", 413, before)

    def test_unknown_order_and_other_company(self):
        before = self.snapshot()
        response, reply = self.call({"orderBillCode": "NO-SUCH-BILL", "status": "3"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual((reply.flag, reply.code), ("failure", "0"))
        self.assertIn("NO-SUCH-BILL", reply.message)
        self.assertEqual(self.Log.search([], limit=1).result, "failed")
        other = self.env["res.company"].create({"name": "Other shop company"})
        self.order.sudo().company_id = other  # same bill code, another company
        response, reply = self.call({"orderBillCode": self.bill, "status": "3"})
        self.assertEqual(reply.code, "0")
        self.assertIn("not found", reply.message)
        self.order.invalidate_recordset()
        self.assertFalse(self.order.qimen_cancelled)
        self.assertEqual(self.snapshot()[1], before[1])

    def test_access_log_masks_the_signature(self):
        logger = logging.getLogger("werkzeug")  # Odoo's request log
        line = "POST /qimen/callback?app_key=a&sign=72BDC161FB27F4D3B20CDCAE79433E17 HTTP/1.1"
        record = logger.makeRecord(
            "werkzeug", logging.INFO, __file__, 0, '%s - - "%s" %s', ("127.0.0.1", line, 200), None
        )
        self.assertTrue(logger.filter(record))  # the filters installed on the logger
        self.assertIn("sign=*** HTTP/1.1", record.getMessage())
        self.assertNotIn("72BDC161FB27", record.getMessage())

    def test_get_answers_in_qimen_format(self):
        response = self.url_open("/qimen/callback?format=xml")
        self.assertEqual(response.status_code, 405)
        self.assertEqual(parse_xml(response.content).findtext("flag"), "failure")
