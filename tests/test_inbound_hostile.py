"""Hostile calls through the real route: each answers a Qimen error (never an HTML page
or a 500), lands in the exchange log, and changes no order."""

import json
import socket
from unittest.mock import patch
from urllib.parse import urlencode, urlsplit

import werkzeug.formparser

from odoo.tests import tagged

from ..models import qimen_callback_log
from ..qimen.inbound import MAX_BODY_BYTES
from ..qimen.responses import parse_reply
from ..qimen.sandbox import build_push
from ..qimen.signing import sign
from .common import APP_KEY
from .inbound_common import CALLBACK_SECRET, QimenCallbackCase


@tagged("post_install", "-at_install")
class TestHostileCallbacks(QimenCallbackCase):
    def post(self, query, body, content_type="application/json", method="POST"):
        url = self.base_url() + "/qimen/callback" + (f"?{query}" if query else "")
        response = self.opener.request(
            method, url, data=body, headers={"Content-Type": content_type}, timeout=30
        )
        return response, parse_reply(response.content, response.status_code)

    def signed(self, params, body_kind="json", body=None, **query_changes):
        """A query string signed over ``body`` (the hostile one when given)."""
        query, raw, ctype = build_push(
            params,
            CALLBACK_SECRET,
            APP_KEY,
            customerid="STORE_ERP_01",
            body_kind=body_kind,
            fmt="xml" if body_kind == "xml" else "json",
        )
        body = raw if body is None else body
        query = {k: v for k, v in dict(query, **query_changes).items() if k != "sign"}
        signed_params = {**query, **params} if body_kind == "form" else query
        query["sign"] = sign(
            signed_params, CALLBACK_SECRET, "md5", None if body_kind == "form" else body
        )
        return urlencode(query), body, ctype

    def assert_refused(self, response, reply, code, http_status, before, logs_before):
        self.assertEqual(response.status_code, http_status, response.text[:300])
        self.assertFalse(
            response.headers["Content-Type"].startswith("text/html"), response.text[:300]
        )
        self.assertEqual((reply.flag, reply.code), ("failure", code), response.text[:300])
        self.assertTrue(reply.sub_code, "every Qimen error names its sub_code")
        self.assertEqual(self.snapshot(), before, "a refused call writes nothing to the order")
        self.assertEqual(self.Log.search_count([]), logs_before + 1, "every call lands in the log")
        log = self.Log.search([], limit=1)
        self.assertEqual((log.result, log.code, log.http_status), ("rejected", code, http_status))
        return log

    def test_nul_and_undecodable_input(self):
        params = {"orderBillCode": self.bill, "status": "3", "zf_message": "攻击"}
        query, body, ctype = self.signed(params)
        nul_bill = {"orderBillCode": self.bill + "\x00", "status": "3"}
        utf16 = (
            '<?xml version="1.0" encoding="UTF-16"?><request><orderBillCode>'
            + self.bill
            + "</orderBillCode><status>3</status></request>"
        ).encode("utf-16")
        invalid = "isv.invalid-parameter"
        bad_char = "holds a NUL or an invalid character"
        cases = {  # name: (call, exact sub_code and message of the reply)
            "NUL in customerid": (
                self.signed(params, customerid="STORE_ERP_01\x00"),
                (f"{invalid}:customerid", f"customerid {bad_char}"),
            ),
            "NUL in app_key": (
                self.signed(params, app_key=APP_KEY + "\x00"),
                (f"{invalid}:app_key", f"app_key {bad_char}"),
            ),
            "NUL in a query name": (
                (query + "&x%00=1", body, ctype),
                (invalid, f"query string {bad_char}"),
            ),
            "NUL byte in a raw body": (
                self.signed(params, body=body + b"\x00"),
                (invalid, "body holds a NUL byte"),
            ),
            "signed bill code \\u0000": (
                self.signed(nul_bill),
                (f"{invalid}:orderBillCode", f"orderBillCode {bad_char}"),
            ),
            "lone surrogate": (
                self.signed(params, body=body.replace("攻击".encode(), b"\\ud800")),
                (f"{invalid}:zf_message", f"zf_message {bad_char}"),
            ),
            "UTF-16 XML body": (
                self.signed(params, body_kind="xml", body=utf16),
                (invalid, "body holds a NUL byte"),
            ),
            "NUL in a form body": (
                self.signed(dict(params, zf_message="a\x00b"), body_kind="form"),
                (f"{invalid}:zf_message", f"zf_message {bad_char}"),
            ),
            "query not UTF-8": (
                (query + "&extra=%FF%FE", body, ctype),
                (invalid, "query string is not UTF-8"),
            ),
        }
        for name, ((case_query, case_body, case_ctype), expected) in cases.items():
            with self.subTest(name):
                before, logs_before = self.snapshot(), self.Log.search_count([])
                response, reply = self.post(case_query, case_body, case_ctype)
                log = self.assert_refused(response, reply, "41", 400, before, logs_before)
                self.assertEqual((reply.sub_code, reply.message), expected)
                stored = json.dumps(log.query, ensure_ascii=False) + (log.body or "")
                self.assertNotIn("\x00", stored)

    def test_other_methods_than_post(self):
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            with self.subTest(method):
                before, logs_before = self.snapshot(), self.Log.search_count([])
                query, body, ctype = self.signed({"orderBillCode": self.bill, "status": "3"})
                response, reply = self.post(query, body, ctype, method=method)
                self.assert_refused(response, reply, "22", 405, before, logs_before)
                self.assertEqual(response.headers.get("Allow"), "POST")

    def test_query_names_of_the_controller_signature(self):
        """A query parameter called like a Python argument of the endpoint."""
        before, logs_before = self.snapshot(), self.Log.search_count([])
        response, reply = self.post("self=1&kwargs=2", b"{}")
        self.assert_refused(response, reply, "22", 400, before, logs_before)

    def test_large_form_bodies_are_refused_unparsed(self):
        parse = patch.object(
            werkzeug.formparser.FormDataParser,
            "parse",
            side_effect=AssertionError("the form was parsed"),
        )
        for size in (MAX_BODY_BYTES + 1, 11 * 1024 * 1024):  # Odoo's form limit is 10 MB
            with self.subTest(size=size), parse:
                before, logs_before = self.snapshot(), self.Log.search_count([])
                body = urlencode({"orderBillCode": self.bill, "status": "3"}).encode()
                body += b"&zf_message=" + b"x" * (size - len(body) - 12)
                query, _body, _ctype = self.signed({}, body=body)
                response, reply = self.post(query, body, "application/x-www-form-urlencoded")
                self.assert_refused(response, reply, "41", 413, before, logs_before)

    def test_a_small_form_body_is_read_without_the_form_parser(self):
        with patch.object(
            werkzeug.formparser.FormDataParser,
            "parse",
            side_effect=AssertionError("the form was parsed"),
        ):
            response, reply = self.call(
                {"orderBillCode": self.bill, "status": "2", "shippingSn": "YT 9"},
                body_kind="form",
            )
        self.assertTrue(reply.ok, response.text)
        self.order.invalidate_recordset()
        self.assertEqual(self.order.qimen_erp_reported["shippingSn"], "YT 9")

    def raw_call(self, headers, body_parts, close_after_sending=False):
        """``(status line, Qimen reply)`` of a call written on the socket as given, its
        body sent part after part."""
        address = urlsplit(self.base_url())
        cookie = self.opener.cookies.get("session_id")
        head = (
            f"POST /qimen/callback?app_key={APP_KEY} HTTP/1.1\r\n"
            f"Host: {address.netloc}\r\nCookie: session_id={cookie}\r\n"
            f"Content-Type: application/json\r\n{headers}\r\n"
        ).encode()
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
            if close_after_sending:
                sock.shutdown(socket.SHUT_WR)  # the client sends no more, and waits
            raw = b""
            while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                raw += data
        head, _sep, content = raw.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n")[0].decode()
        return status_line, parse_reply(content, int(status_line.split()[1]))

    def test_an_endless_chunked_body_is_refused_without_waiting_for_its_end(self):
        """The server answers after reading the cap: it neither waits for nor buffers the
        rest (a body that never ends would otherwise hold a thread and its memory)."""
        before, logs_before = self.snapshot(), self.Log.search_count([])
        chunk = b"x" * 65536
        chunks = (  # no final chunk: the body never ends
            b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            for _ in range(MAX_BODY_BYTES // len(chunk) + 2)
        )
        status_line, reply = self.raw_call("Transfer-Encoding: chunked\r\n", chunks)
        self.assertIn(" 413 ", status_line)
        self.assertEqual((reply.flag, reply.code), ("failure", "41"))
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.Log.search_count([]), logs_before + 1)

    def test_a_body_that_cannot_be_read_gets_a_qimen_reply(self):
        """A broken chunked encoding, a body shorter than its Content-Length: a Qimen
        error, logged, where werkzeug's own error would be an HTML page."""
        before = self.snapshot()
        cases = {
            "broken chunk": ("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n", False),
            "cut short": ("Content-Length: 1000\r\n", b'{"orderBillCode": "', True),
        }
        for name, (headers, body, close) in cases.items():
            with self.subTest(name):
                logs_before = self.Log.search_count([])
                status_line, reply = self.raw_call(headers, [body], close)
                self.assertIn(" 400 ", status_line)
                self.assertEqual((reply.flag, reply.code), ("failure", "41"))
                self.assertEqual(self.Log.search_count([]), logs_before + 1)
                log = self.Log.search([], limit=1)
                self.assertEqual((log.http_status, log.message), (400, "body could not be read"))
        self.assertEqual(self.snapshot(), before)

    def test_a_refusal_quoting_the_caller_is_stored_capped(self):
        """A message that quotes what an unknown caller sent is capped like its query."""
        query = urlencode(
            {"app_key": APP_KEY, "method": "pos.update.salesorder", "customerid": "C" * 55_000}
        )
        response, reply = self.post(query, b"{}")
        self.assertEqual((response.status_code, reply.code), (403, "41"))
        log = self.Log.search([], limit=1)
        self.assertFalse(log.company_id)
        self.assertIn("Unknown customerid CCC", log.message)
        self.assertLess(len(log.message), 1100)

    def test_a_flood_of_unauthenticated_calls_stays_bounded(self):
        """The first calls of a window are stored (capped), the next ones only counted;
        a call whose company is known and signature valid is stored whole, always."""
        last_id = self.Log.search([], limit=1).id or 0
        filler = "x" * 55_000
        with (
            patch.object(qimen_callback_log, "FLOOD_STORED_CALLS", 3),
            patch.object(qimen_callback_log, "FLOOD_WINDOW_MINUTES", 10**6),
        ):
            for index in range(8):
                query = urlencode(
                    {
                        "n": index,
                        "app_key": "nobody",
                        "method": "pos.update.salesorder",
                        "filler": filler,
                    }
                )
                response, reply = self.post(query, b'{"zf_message": "' + b"y" * 5000 + b'"}')
                self.assertEqual((response.status_code, reply.code), (403, "29"))
            response, reply = self.call({"orderBillCode": self.bill, "status": "9"})
            self.assertEqual((response.status_code, reply.code), (400, "41"))
        logs = self.Log.search([("id", ">", last_id)], order="id")
        self.assertEqual(logs.mapped("result"), ["rejected"] * 3 + ["counted", "rejected"])
        self.assertEqual([log.query["n"] for log in logs[:3]], ["0", "1", "2"])
        self.assertEqual(logs[3].calls, 5)
        for log in logs[:3]:
            self.assertLess(len(json.dumps(log.query)) + len(log.body), 2500)
        self.assertEqual(logs[4].company_id, self.company, "authenticated: not counted")

    def test_an_unexpected_error_changes_nothing(self):
        """What the call did before the error is rolled back; the call is logged."""
        order_model = type(self.env["pos.order"])
        original = order_model._qimen_handle_notification_data

        def write_then_fail(order, params):
            original(order, params)
            raise RuntimeError("boom")

        before = self.snapshot()
        with (
            patch.object(order_model, "_qimen_handle_notification_data", write_then_fail),
            self.assertLogs("odoo.addons.pos_qimen_sync.models.qimen_callback_handler", "ERROR"),
        ):
            response, reply = self.call({"orderBillCode": self.bill, "status": "3"})
        self.assertEqual(
            (response.status_code, reply.code, reply.sub_code), (503, "15", "isp.internal-error")
        )
        self.assertEqual(self.snapshot(), before)
        log = self.Log.search([], limit=1)
        self.assertEqual((log.result, log.http_status, log.order_id), ("failed", 503, self.order))
