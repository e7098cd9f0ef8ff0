"""Calls racing each other in two committed transactions, as two requests of a
threaded server run (test mode would serialize them: this class does not use it)."""

import functools
import threading
import time
from unittest.mock import patch
from urllib.parse import urlencode

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import DummyRLock, Registry
from odoo.service.model import retrying
from odoo.tests import TransactionCase, tagged

from ..qimen.sandbox import build_push

APP_KEY = "race-app"
SECRET = "race-secret-竞争"
CUSTOMERID = "RACE_SHOP"
BILL = "RACE-BILL-1"
COMPANY_FIELDS = [
    "qimen_enabled",
    "qimen_app_key",
    "qimen_app_secret",
    "qimen_callback_secret",
    "qimen_customerid",
]


@tagged("post_install", "-at_install")
class TestRacingCalls(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with cls.registry.cursor() as cr:  # committed: seen by every other transaction
            env = api.Environment(cr, SUPERUSER_ID, {})
            company = env.ref("base.main_company")
            config = env["pos.config"].create({"name": "Race shop", "company_id": company.id})
            session = env["pos.session"].create({"config_id": config.id, "user_id": env.uid})
            order = env["pos.order"].create(
                {
                    "session_id": session.id,
                    "amount_tax": 0,
                    "amount_total": 0,
                    "amount_paid": 0,
                    "amount_return": 0,
                    "qimen_bill_code": BILL,
                }
            )
            cls.saved_company = company.read(COMPANY_FIELDS)[0]
            company.write(
                {
                    "qimen_enabled": True,
                    "qimen_app_key": APP_KEY,
                    "qimen_app_secret": "outbound-secret",
                    "qimen_callback_secret": SECRET,
                    "qimen_customerid": CUSTOMERID,
                }
            )
            cls.company_id, cls.order_id = company.id, order.id
            cls.config_id, cls.session_id = config.id, session.id
        cls.addClassCleanup(cls._remove_committed_data)

    @classmethod
    def _remove_committed_data(cls):
        with cls.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["qimen.callback.log"].search([("bill_code", "=", BILL)]).unlink()
            order = env["pos.order"].browse(cls.order_id)
            order.message_ids.unlink()
            order.activity_ids.unlink()
            order.unlink()
            env["pos.session"].browse(cls.session_id).unlink()
            env["pos.config"].browse(cls.config_id).unlink()
            saved = {k: v for k, v in cls.saved_company.items() if k != "id"}
            env["res.company"].browse(cls.company_id).write(saved)

    def setUp(self):
        super().setUp()
        # Odoo's test runner holds the registry lock while it runs tests: let the other
        # thread look the registry up, as HttpCase does for its server's threads
        lock = patch.object(Registry, "_lock", DummyRLock())
        lock.start()
        self.addCleanup(lock.stop)
        self._reset()

    def _reset(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["qimen.callback.log"].search([("bill_code", "=", BILL)]).unlink()
            order = env["pos.order"].browse(self.order_id)
            order.message_ids.unlink()
            order.write(
                {
                    "qimen_erp_reported": False,
                    "qimen_erp_status": False,
                    "qimen_erp_last_status": False,
                    "qimen_erp_last_report": False,
                }
            )

    # helpers ---------------------------------------------------------------------------
    def signed(self, params):
        query, body, _ctype = build_push(
            dict(params, orderBillCode=BILL), SECRET, APP_KEY, customerid=CUSTOMERID
        )
        return query, body

    def handle(self, env, call, last_try=False):
        query, body = call
        return env["qimen.callback.handler"]._handle_call(
            "POST",
            urlencode(query).encode(),
            body,
            "application/json",
            "127.0.0.1",
            last_try=last_try,
        )

    def race(self, first, second, last_try=False):
        """Handle ``first`` in a transaction left open, ``second`` in another one (retried
        as Odoo retries a request, unless it is its ``last_try``), and commit the first
        once the second waits for it."""
        results, started = {}, threading.Event()

        def run_second():
            with self.registry.cursor() as cr:
                results["pid"] = cr._cnx.get_backend_pid()
                started.set()
                env = api.Environment(cr, SUPERUSER_ID, {})
                handle = functools.partial(self.handle, env, second, last_try)
                results["second"] = handle() if last_try else retrying(handle, env)

        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            results["first"] = self.handle(env, first)
            env.flush_all()
            thread = threading.Thread(target=run_second)
            thread.start()
            started.wait(30)
            self.assertTrue(self._waits_for_a_lock(results["pid"], thread), "no race happened")
        # leaving the block committed the first transaction
        thread.join(60)
        self.assertFalse(thread.is_alive())
        return results["first"], results["second"]

    def _waits_for_a_lock(self, pid, thread):
        with self.registry.cursor() as cr:
            for _poll in range(600):
                cr.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
                if cr.fetchone()[0] == "Lock":
                    return True
                if not thread.is_alive():
                    return False
                time.sleep(0.05)
        return False

    def outcome(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            logs = env["qimen.callback.log"].search([("bill_code", "=", BILL)], order="id")
            order = env["pos.order"].browse(self.order_id)
            return (
                logs.mapped("result"),
                (order.qimen_erp_reported or {}).get("shippingSn"),
                len(order.message_ids.filtered(lambda m: "ERP" in (m.body or ""))),
            )

    # the races ---------------------------------------------------------------------------
    def test_a_replay_racing_its_original_is_applied_once(self):
        for status in ("2", "5"):  # applied, and recorded: the call's identity decides
            with self.subTest(status=status):
                self._reset()
                call = self.signed({"status": status, "shippingSn": "SN-" + status})
                first, second = self.race(call, call)
                self.assertEqual(first[0], 200)
                self.assertEqual(second[0], 200, second[1])
                self.assertIn(b'"flag": "success"', second[1])
                self.assertIn(b"Already applied", second[1])
                results, _number, notes = self.outcome()
                applied = "applied" if status == "2" else "recorded"
                self.assertEqual(results, [applied, "duplicate"])
                self.assertEqual(notes, 1, "one application, one note")

    def test_two_updates_racing_are_both_applied_in_turn(self):
        first, second = self.race(
            self.signed({"status": "2", "shippingSn": "FIRST"}),
            self.signed({"status": "2", "shippingSn": "CORRECTED"}),
        )
        self.assertIn(b'"message": "OK"', first[1])
        self.assertIn(b'"message": "OK"', second[1])
        self.assertEqual(self.outcome(), (["applied", "applied"], "CORRECTED", 2))

    def test_the_last_try_answers_busy_in_qimen_format(self):
        """When Odoo would not run the request again, the call answers 503 code 15 with
        its sub_code, and logs it, instead of an HTML 500."""
        _first, second = self.race(
            self.signed({"status": "2", "shippingSn": "FIRST"}),
            self.signed({"status": "2", "shippingSn": "LOST"}),
            last_try=True,
        )
        self.assertEqual(second[0], 503)
        self.assertIn(b'"sub_code": "isp.concurrent-update"', second[1])
        self.assertEqual(self.outcome(), (["applied", "failed"], "FIRST", 1))
