import json
import time
import uuid

import psycopg2
from lxml import etree

from odoo import SUPERUSER_ID, api
from odoo.exceptions import UserError
from odoo.tests import Form, TransactionCase, tagged
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from .common import QimenPosCase


@tagged("post_install", "-at_install")
class TestOrderSyncPage(QimenPosCase):
    """What the back office says of an order: what the store records, what each update
    to the ERP became, and what the ERP reported, kept apart."""

    def arch(self, model, view_type):
        views = self.env[model].get_views([(False, view_type)])
        return etree.fromstring(views["views"][view_type]["arch"])

    def sent(self, order):
        order.invalidate_recordset()
        return {
            event: (order[f"qimen_sent_{event}_state"], order[f"qimen_sent_{event}_date"])
            for event in ("confirm", "pickup", "void", "complete")
        }

    def test_the_page_keeps_the_three_sources_apart(self):
        form = self.arch("pos.order", "form")
        page = form.xpath("//page[@name='qimen_sync']")[0]

        def fields_of(group):
            return set(page.xpath(f".//group[@name='{group}']//field/@name"))

        store, sent, reported = (
            fields_of("qimen_store"),
            fields_of("qimen_sent"),
            fields_of("qimen_reported"),
        )
        self.assertLessEqual(
            {"qimen_confirm", "qimen_delivery", "qimen_cancelled", "qimen_finished"}, store
        )
        per_update = {
            f"qimen_sent_{event}_{kind}"
            for event in ("confirm", "pickup", "void", "complete")
            for kind in ("state", "date")
        }
        self.assertLessEqual(per_update | {"qimen_sync_state", "qimen_bill_code"}, sent)
        self.assertEqual(
            reported,
            {
                "qimen_erp_status",
                "qimen_erp_status_date",
                "qimen_erp_last_status",
                "qimen_erp_last_report_date",
                "qimen_erp_reported_text",
            },
        )
        self.assertFalse(store & (sent | reported), "no fact shown under two sources")
        self.assertEqual(
            page.xpath(".//field[@name='qimen_bill_code']/@readonly"), ["qimen_bill_code_locked"]
        )

    def test_each_update_shows_its_state_and_when_the_erp_acknowledged_it(self):
        order = self.paid_order()
        self.assertEqual(
            self.sent(order),
            {
                "confirm": ("pending", False),
                "pickup": ("pending", False),
                "void": (False, False),
                "complete": (False, False),
            },
        )
        self.sandbox.add_fault("http500", count=1)
        self.dispatch()
        # the store records the order as confirmed; the ERP has not acknowledged it
        self.assertEqual(order.qimen_confirm, "1")
        self.assertEqual(self.sent(order)["confirm"], ("failed", False))
        confirm, pickup = self.jobs(order)
        self.expire_backoff(confirm)
        self.dispatch()
        self.assertEqual((confirm.state, pickup.state), ("done", "done"))
        self.assertTrue(confirm.date_done and pickup.date_done)
        sent = self.sent(order)
        self.assertEqual(sent["confirm"], ("done", confirm.date_done))
        self.assertEqual(sent["pickup"], ("done", pickup.date_done))

    def test_a_superseded_update_says_so(self):
        order = self.paid_order()
        refund = order._refund()
        self.make_payment(refund, self.cash_pm1, refund.amount_total)
        sent = self.sent(order)
        self.assertEqual(
            (sent["confirm"][0], sent["pickup"][0], sent["void"][0]),
            ("superseded", "superseded", "pending"),
        )

    def test_the_list_and_filters_show_what_the_erp_reported(self):
        voided, finished, silent = self.paid_order(), self.paid_order(), self.paid_order()
        voided.with_context(qimen_from_erp=True).write({"qimen_erp_status": "3"})
        finished.with_context(qimen_from_erp=True).write({"qimen_erp_status": "4"})
        orders = voided | finished | silent
        column = self.arch("pos.order", "list").xpath("//field[@name='qimen_erp_status']")[0]
        self.assertEqual(
            (column.get("widget"), column.get("optional"), column.get("string")),
            ("badge", "show", "Reported by the ERP"),
        )
        self.assertEqual(column.get("decoration-danger"), "qimen_erp_status == '3'")
        search = self.arch("pos.order", "search")
        for name, expected in (("qimen_erp_voided", voided), ("qimen_erp_finished", finished)):
            domain = safe_eval(search.xpath(f"//filter[@name='{name}']/@domain")[0])
            found = self.env["pos.order"].search([("id", "in", orders.ids), *domain])
            self.assertEqual(found, expected, name)
        group_by = search.xpath("//filter[@name='qimen_group_erp_status']/@context")[0]
        self.assertEqual(safe_eval(group_by), {"group_by": "qimen_erp_status"})
        groups = self.env["pos.order"].read_group(
            [("id", "in", orders.ids)], ["qimen_erp_status"], ["qimen_erp_status"]
        )
        self.assertEqual(
            {group["qimen_erp_status"]: group["qimen_erp_status_count"] for group in groups},
            {"3": 1, "4": 1, False: 1},
        )

    def test_queue_rows_offer_only_the_actions_that_apply(self):
        rows = self.arch("qimen.sync.job", "list").xpath("/list/button")
        self.assertEqual(
            {(b.get("name"), b.get("invisible")) for b in rows},
            {
                ("action_retry", "state not in ('failed', 'dead', 'cancelled')"),
                ("action_cancel", "state not in ('pending', 'failed', 'dead')"),
            },
        )


@tagged("post_install", "-at_install")
class TestBillCodeLock(QimenPosCase):
    def test_a_bill_code_changed_before_anything_went_out_is_what_is_sent(self):
        order = self.paid_order()
        jobs = self.jobs(order)
        self.assertFalse(order.qimen_bill_code_locked, "queued, nothing sent yet")
        with Form(order) as form:
            form.qimen_bill_code = "ERP-A-0001"
        self.assertEqual(jobs.mapped("bill_code"), ["ERP-A-0001", "ERP-A-0001"])
        self.assertEqual({job.payload["orderBillCode"] for job in jobs}, {"ERP-A-0001"})
        self.dispatch()
        sent = {call.params["orderBillCode"] for call in self.sandbox.calls("accepted")}
        self.assertEqual(sent, {"ERP-A-0001"})
        self.assertTrue(order.qimen_bill_code_locked)
        found, _error = self.env["pos.order"]._qimen_find_by_bill_code(self.company, "ERP-A-0001")
        self.assertEqual(found, order, "the ERP's calls still find the order")

    def test_locked_once_an_update_went_out(self):
        order = self.paid_order()
        code = order.qimen_bill_code
        self.sandbox.add_fault("timeout", count=1)  # the ERP may have received it
        with mute_logger("odoo.addons.pos_qimen_sync.models.qimen_sync_job_sending"):
            self.dispatch()
        confirm = self.jobs(order)[0]
        self.assertEqual(confirm.state, "failed")
        self.assertTrue(order.qimen_bill_code_locked)
        with self.assertRaisesRegex(UserError, "already went out"):
            order.qimen_bill_code = "ERP-B-0001"
        self.assertEqual((order.qimen_bill_code, confirm.bill_code), (code, code))
        order.qimen_bill_code = code  # writing the same value is no change

    def test_still_locked_after_the_sent_jobs_are_deleted(self):
        order = self.paid_order()
        self.dispatch()
        self.jobs(order).unlink()  # what the retention period does
        order.invalidate_recordset()
        self.assertTrue(order.qimen_bill_code_locked)
        with self.assertRaises(UserError):
            order.qimen_bill_code = "ERP-C-0001"

    def test_locked_when_the_erp_reported_on_the_order(self):
        draft = self.draft_order()
        self.assertFalse(draft.qimen_bill_code_locked)
        draft.with_context(qimen_from_erp=True).write({"qimen_erp_status": "1"})
        self.assertTrue(draft.qimen_bill_code_locked)

    def test_free_while_nothing_was_queued(self):
        self.company.qimen_app_secret = False
        order = self.paid_order()
        self.assertTrue(order.qimen_config_error)
        self.assertFalse(order.qimen_bill_code_locked)
        order.qimen_bill_code = "ERP-D-0001"
        self.assertEqual(order.qimen_bill_code, "ERP-D-0001")

    def test_a_bill_code_is_one_order_s(self):
        first, second = self.paid_order(), self.paid_order()
        with self.assertRaisesRegex(UserError, "already used by"):
            second.qimen_bill_code = first.qimen_bill_code
        with self.assertRaisesRegex(UserError, "own"):
            (first | second).write({"qimen_bill_code": "ERP-E-0001"})
        with self.assertRaisesRegex(UserError, "needs a bill code"):
            second.qimen_bill_code = False


@tagged("post_install", "-at_install")
class TestBillCodeChangeRacesASender(TransactionCase):
    """Two real transactions: a sender claiming a queued update (``_claim_next``), and a
    user changing the order's bill code. What they need is committed here and undone at
    the end: a queued job of the main company, whose sync is switched on meanwhile."""

    def setUp(self):
        super().setUp()
        self.code = f"RACE-{uuid.uuid4().hex[:12]}"
        company = self.env.ref("base.main_company")
        with self.registry.cursor() as cr:
            cr.execute("SELECT qimen_enabled FROM res_company WHERE id = %s", [company.id])
            enabled = cr.fetchone()[0]
            cr.execute("UPDATE res_company SET qimen_enabled = true WHERE id = %s", [company.id])
            cr.execute(
                """INSERT INTO qimen_sync_job (company_id, bill_code, event, status, payload,
                                               state, attempts, next_attempt)
                   VALUES (%s, %s, 'confirm', '1', %s, 'pending', 0,
                           now() at time zone 'UTC' - interval '1 minute')
                   RETURNING id""",
                [company.id, self.code, json.dumps({"orderBillCode": self.code})],
            )
            self.job_id = cr.fetchone()[0]

        def undo():
            with self.registry.cursor() as cr:
                cr.execute("DELETE FROM qimen_sync_job WHERE id = %s", [self.job_id])
                cr.execute(
                    "UPDATE res_company SET qimen_enabled = %s WHERE id = %s",
                    [enabled, company.id],
                )

        self.addCleanup(undo)

    @staticmethod
    def claim(cr):
        env = api.Environment(cr, SUPERUSER_ID, {})
        return env["qimen.sync.job"]._claim_next(time.time() + 60)

    def test_a_claim_committed_first_makes_the_change_fail_and_be_retried(self):
        with self.registry.cursor() as user_cr, self.registry.cursor() as sender_cr:
            user_env = api.Environment(user_cr, SUPERUSER_ID, {})
            job = user_env["qimen.sync.job"].browse(self.job_id)
            self.assertEqual(job.state, "pending")  # the user's snapshot: not sent yet
            self.assertEqual(self.claim(sender_cr).job_id, self.job_id)
            sender_cr.commit()
            with (
                mute_logger("odoo.sql_db"),
                self.assertRaises(psycopg2.errors.SerializationFailure),
            ):
                user_env["qimen.sync.job"]._rekey(job, "NEW-" + self.code)
            user_cr.rollback()
        with self.registry.cursor() as cr:
            cr.execute("SELECT bill_code, state FROM qimen_sync_job WHERE id = %s", [self.job_id])
            self.assertEqual(cr.fetchone(), (self.code, "sending"), "sent with its old code")

    def test_a_sender_skips_a_job_being_rekeyed_then_sends_the_new_code(self):
        new_code = "NEW-" + self.code
        with self.registry.cursor() as user_cr, self.registry.cursor() as sender_cr:
            user_env = api.Environment(user_cr, SUPERUSER_ID, {})
            job = user_env["qimen.sync.job"].browse(self.job_id)
            user_env["qimen.sync.job"]._rekey(job, new_code)
            user_env.flush_all()
            self.assertIsNone(self.claim(sender_cr), "locked by the change: skipped")
            sender_cr.rollback()
            user_cr.commit()
            claim = self.claim(sender_cr)
            self.assertEqual((claim.job_id, claim.bill_code), (self.job_id, new_code))
            sender_cr.execute(
                "SELECT payload->>'orderBillCode' FROM qimen_sync_job WHERE id = %s",
                [self.job_id],
            )
            self.assertEqual(sender_cr.fetchone()[0], new_code)
