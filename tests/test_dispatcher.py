import os
import sys
import threading
import time
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.modules.module import get_manifest
from odoo.modules.neutralize import get_neutralization_queries
from odoo.service import server
from odoo.tests import new_test_user, tagged
from odoo.tools import config, mute_logger

from ..dispatch import budget, watchdog
from ..dispatch.lanes import EnclosingTransaction, Lane
from ..qimen.client import SendResult
from .common import QimenPosCase


@tagged("post_install", "-at_install")
class TestDispatcher(QimenPosCase):
    """The queue's rules that one transaction can show; real concurrency is in
    test_concurrency.py."""

    def test_a_job_is_leased_for_the_longest_call_and_taken_back_after(self):
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        claim = self.Job._claim_next(time.time() + 60)
        self.assertEqual(claim.job_id, confirm.id)
        self.assertEqual((confirm.state, confirm.attempts), ("sending", 1))
        # twice a call (connect 5 s + 2 x read 1 s, the tests' company) + 10 s margin
        lease = (confirm.lease_until - confirm.sending_since).total_seconds()
        self.assertEqual(lease, 2 * (5 + 2 * 1) + 10)
        self.assertFalse(self.Job._reclaim_expired(), "its sender may still be calling")
        self.env.cr.execute(
            "UPDATE qimen_sync_job SET lease_until = lease_until - interval '1 hour' WHERE id = %s",
            [confirm.id],
        )
        confirm.invalidate_recordset()
        with self.assertLogs("odoo.addons.pos_qimen_sync", "WARNING"):
            self.assertEqual(self.Job._reclaim_expired(), confirm)
        self.assertEqual(confirm.state, "failed")
        self.assertIn("Interrupted", confirm.last_error)
        # the first sender comes back late: its outcome must not overwrite the queue's
        with self.assertLogs("odoo.addons.pos_qimen_sync", "WARNING") as logs:
            self.Job._record(claim, SendResult("success", code="1"))
        self.assertIn("taken back", logs.output[0])
        self.assertEqual(confirm.state, "failed")

    def test_a_success_is_recorded_with_the_next_claim_in_one_statement(self):
        first, second = self.paid_order(), self.paid_order()
        lane, until = Lane(self.Job, EnclosingTransaction(self.env)), time.time() + 60
        claim = lane.claim_next(until, 60)
        first_paid, second_paid = self.jobs(first)[0], self.jobs(second)[0]
        self.assertEqual(claim.job_id, first_paid.id)
        with self.executed_queries() as executed:
            claim = lane.record_and_claim(claim, SendResult("success", code="1"), until, 60)
        self.assertEqual(len(executed), 1)
        self.assertEqual(claim.job_id, second_paid.id, "the oldest due, another order's")
        self.assertEqual((first_paid.state, first_paid.last_code), ("done", "1"))
        self.assertEqual(second_paid.state, "sending")

    def test_a_lane_claims_again_when_only_the_orders_next_update_waits(self):
        """The statement sees the queue as it was before it: the order's next update
        is not due in it; the claim after sees it due."""
        order = self.paid_order()
        paid, pickup = self.jobs(order)
        lane, until = Lane(self.Job, EnclosingTransaction(self.env)), time.time() + 60
        claim = lane.claim_next(until, 60)
        with self.executed_queries() as executed:
            claim = lane.record_and_claim(claim, SendResult("success", code="1"), until, 60)
        self.assertEqual(len(executed), 2)
        self.assertEqual(claim.job_id, pickup.id)
        self.assertEqual((paid.state, pickup.state), ("done", "sending"))

    def test_a_success_taken_back_is_not_recorded_and_the_next_claim_stands(self):
        first, second = self.paid_order(), self.paid_order()
        lane, until = Lane(self.Job, EnclosingTransaction(self.env)), time.time() + 60
        claim = lane.claim_next(until, 60)
        taken_back = self.jobs(first)[0]
        self.env.cr.execute(
            "UPDATE qimen_sync_job SET state = 'failed', lease_until = NULL, "
            "next_attempt = now() AT TIME ZONE 'UTC' + interval '1 hour' WHERE id = %s",
            [taken_back.id],
        )
        with self.assertLogs("odoo.addons.pos_qimen_sync", "WARNING") as logs:
            claim = lane.record_and_claim(claim, SendResult("success", code="1"), until, 60)
        self.assertIn("taken back", logs.output[0])
        taken_back.invalidate_recordset()
        self.assertEqual(taken_back.state, "failed", "a late outcome overwrites nothing")
        self.assertEqual(claim.bill_code, second.qimen_bill_code)

    def test_a_run_takes_no_job_it_could_not_finish_within_the_time_limit(self):
        order = self.paid_order()
        thread = threading.current_thread()
        with patch.dict(config.options, {"limit_time_real": 120, "limit_time_real_cron": 0}):
            thread.start_time = time.time() - 100  # the cron thread's pass began 100 s ago
            try:
                self.assertAlmostEqual(budget.run_deadline(), thread.start_time + 90, 3)
                self.assertEqual(self.dispatch(), 0)
            finally:
                del thread.start_time
            self.assertEqual(set(self.jobs(order).mapped("state")), {"pending"})
            self.assertEqual(self.dispatch(), 2, "a fresh run has the time")

    def test_a_prefork_run_counts_from_the_workers_last_ping(self):
        """A prefork cron worker is killed its time limit after it last pinged its
        watchdog (before it slept): the run's budget counts from that ping, and a worker
        that does not know it (the addon was loaded after it) asks for a fresh run."""
        # the manifest's post_load hook, as Odoo calls it when it imports the addon
        # (idempotent; pytest-odoo imports the addon before Odoo does, and Odoo skips it)
        addon = sys.modules["odoo.addons.pos_qimen_sync"]
        getattr(addon, get_manifest("pos_qimen_sync")["post_load"])()
        order = self.paid_order()
        cron = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch")
        triggers = self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)])
        thread = threading.current_thread()
        prefork = object.__new__(server.PreforkServer)  # as in a worker: the server is it
        read_end, write_end = os.pipe()
        with (
            patch.object(server, "server", prefork),
            patch.dict(config.options, {"limit_time_real": 120, "limit_time_real_cron": 0}),
        ):
            try:
                self.assertIsNone(budget.run_deadline())
                self.assertEqual(self.dispatch(), 0)
                self.assertEqual(set(self.jobs(order).mapped("state")), {"pending"})
                new_triggers = self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)])
                self.assertEqual(len(new_triggers - triggers), 1, "a fresh run is asked")
                before = time.time()
                server.PreforkServer.pipe_ping(prefork, (read_end, write_end))  # Odoo's loop
                self.assertEqual(os.read(read_end, 1), b".", "the ping still reaches Odoo")
                pinged = getattr(thread, watchdog.PING_ATTRIBUTE)
                self.assertGreaterEqual(pinged, before)
                self.assertAlmostEqual(budget.run_deadline(), pinged + 90, 3)
                self.assertEqual(self.dispatch(), 2, "then the run has the time")
            finally:
                thread.__dict__.pop(watchdog.PING_ATTRIBUTE, None)
                os.close(read_end)
                os.close(write_end)

    def test_a_run_with_work_left_triggers_a_fresh_run(self):
        self.paid_order()
        cron = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch")
        Trigger = self.env["ir.cron.trigger"]
        before = Trigger.search([("cron_id", "=", cron.id)])
        with patch.object(type(self.Job), "_claim_next", return_value=None):
            self.dispatch()
        self.assertEqual(len(Trigger.search([("cron_id", "=", cron.id)]) - before), 1)
        self.dispatch()
        self.assertEqual(
            len(Trigger.search([("cron_id", "=", cron.id)]) - before), 1, "nothing left: none"
        )

    def test_dispatch_runs_at_once_are_copies_of_the_cron_each_triggered(self):
        """A chain's servers each run the dispatcher only with a cron of their own: the
        setting keeps that many, and every trigger asks them all."""
        main = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch")
        settings = self.env["res.config.settings"].create({})
        self.assertEqual(settings.qimen_dispatch_runs, 1)
        settings.qimen_dispatch_runs = 3
        settings.execute()
        crons = self.Job._dispatch_crons()
        self.assertEqual(len(crons), 3)
        self.assertEqual(crons[0], main)
        for copy in crons[1:]:
            self.assertEqual(copy.code, main.code)
            self.assertEqual(copy.model_id, main.model_id)
            self.assertEqual(copy.active, main.active)
            self.assertEqual(copy.interval_number, main.interval_number)
        self.assertEqual(self.env["res.config.settings"].create({}).qimen_dispatch_runs, 3)
        Trigger = self.env["ir.cron.trigger"]
        before = Trigger.search([("cron_id", "in", crons.ids)])
        self.paid_order()
        self.env.cr.precommit.run()  # the trigger is made when the till's work commits
        self.assertEqual((Trigger.search([("cron_id", "in", crons.ids)]) - before).cron_id, crons)
        crons[2].active = False  # an inactive run is not asked
        before = Trigger.search([("cron_id", "in", crons.ids)])
        self.Job._create_dispatch_trigger()
        self.assertEqual(
            (Trigger.search([("cron_id", "in", crons.ids)]) - before).cron_id, crons[:2]
        )
        settings = self.env["res.config.settings"].create({"qimen_dispatch_runs": 1})
        settings.execute()
        self.assertEqual(self.Job._dispatch_crons(), main)
        self.assertFalse(crons[1:].exists())
        with self.assertRaisesRegex(ValidationError, "between 1 and 8"):
            self.env["res.config.settings"].create({"qimen_dispatch_runs": 9})

    def test_a_failure_schedules_the_run_of_its_retry(self):
        order = self.paid_order()
        self.sandbox.add_fault("http500", count=1)
        cron = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch")
        self.dispatch()
        confirm = self.jobs(order)[0]
        self.assertEqual(confirm.state, "failed")
        trigger = self.env["ir.cron.trigger"].search(
            [
                ("cron_id", "=", cron.id),
                (
                    "call_at",
                    "=",
                    confirm.next_attempt.replace(microsecond=0) + timedelta(seconds=1),
                ),
            ]
        )
        self.assertTrue(trigger)
        self.Job._trigger_next_retry()  # every run asks: still one trigger for that time
        self.assertEqual(
            trigger,
            self.env["ir.cron.trigger"].search(
                [("cron_id", "=", cron.id), ("call_at", "=", trigger.call_at)]
            ),
        )

    def test_replies_are_stored_whatever_bytes_they_hold(self):
        for kind, field in (("garbage", "last_reply"), ("nul", "last_error")):
            with self.subTest(kind):
                order = self.paid_order()
                self.sandbox.add_fault(kind, bill_codes=[order.qimen_bill_code], count=1)
                self.dispatch()
                confirm = self.jobs(order)[0]
                self.assertIn(confirm.state, ("failed", "dead"))
                self.assertNotIn("Unexpected", confirm.last_error)
                self.assertIn("\\x00", confirm[field])


@tagged("post_install", "-at_install")
class TestQueueHygiene(QimenPosCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            "qimen_queue_manager",
            groups="point_of_sale.group_pos_manager",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )

    def test_a_manager_moves_jobs_only_through_the_actions(self):
        order = self.paid_order()
        confirm = self.jobs(order)[0].with_user(self.manager)
        for vals in (
            {"state": "done"},
            {"attempts": 0},
            {"payload": {"orderBillCode": "X", "status": "3"}},
            {"next_attempt": fields.Datetime.now()},
            {"last_error": "fine"},
        ):
            with self.subTest(vals=list(vals)), self.assertRaises(AccessError):
                confirm.write(vals)
        with self.assertRaises(AccessError):
            order.with_user(self.manager).write(
                {"qimen_job_ids": [(1, confirm.id, {"state": "done"})]}
            )
        confirm.action_cancel()
        self.assertEqual(confirm.state, "cancelled")
        confirm.action_retry()
        self.assertEqual(confirm.state, "pending")

    def test_actions_say_why_they_leave_jobs_alone(self):
        order = self.paid_order()
        self.dispatch()
        confirm, pickup = self.jobs(order)
        self.assertEqual(confirm.state, "done")
        with self.assertRaisesRegex(UserError, r"(?s)Only failed, dead or cancelled.*Acknowledged"):
            confirm.action_retry()
        with self.assertRaisesRegex(UserError, "Only pending, failed or dead"):
            (confirm | pickup).action_cancel()
        other = self.paid_order()
        waiting = self.jobs(other)[0]
        result = (confirm | waiting).action_cancel()
        self.assertEqual(waiting.state, "cancelled")
        self.assertEqual(result["tag"], "display_notification")
        self.assertIn(confirm.name, result["params"]["message"])
        self.assertEqual(waiting.action_retry()["tag"], "soft_reload", "nothing left alone")

    def test_finished_jobs_are_deleted_after_the_retention_in_batches(self):
        orders = [self.paid_order() for _i in range(3)]
        self.dispatch()
        done = self.Job.search([("bill_code", "in", [o.qimen_bill_code for o in orders])])
        self.assertEqual(set(done.mapped("state")), {"done"})
        cancelled = self.jobs(self.paid_order())
        cancelled.action_cancel()
        self.sandbox.add_fault("isv")
        dead = self.jobs(self.paid_order())
        self.dispatch()
        self.assertEqual(dead.mapped("state"), ["dead", "pending"])
        old = fields.Datetime.now() - timedelta(days=31)
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE qimen_sync_job SET write_date = %s WHERE id IN %s",
            [old, tuple((done | cancelled | dead).ids)],
        )
        recent = self.jobs(self.paid_order())
        with (
            patch("odoo.addons.pos_qimen_sync.models.qimen_sync_job.GC_BATCH", 2),
            mute_logger("odoo.addons.pos_qimen_sync.models.qimen_sync_job"),
        ):
            deleted = self.Job._gc_finished_jobs(commit=False)
        self.assertEqual(deleted, len(done) + len(cancelled))
        self.assertFalse((done | cancelled).exists())
        self.assertEqual(dead.exists(), dead, "a dead job waits for an operator")
        self.assertEqual(recent.exists(), recent)
        self.env["ir.config_parameter"].sudo().set_param("pos_qimen_sync.job_retention_days", 60)
        self.assertEqual(self.Job._gc_finished_jobs(commit=False), 0)

    def test_neutralized_copies_keep_no_secret(self):
        self.company.qimen_callback_secret = "回调密钥"
        self.env.flush_all()
        for query in get_neutralization_queries(["pos_qimen_sync"]):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        company = self.company.sudo()
        self.assertEqual(
            (company.qimen_enabled, company.qimen_app_secret, company.qimen_callback_secret),
            (False, False, False),
        )


def job_inserts(executed):
    return [query for query in executed if "INSERT INTO qimen_sync_job" in query]


@tagged("post_install", "-at_install")
class TestOrderSyncState(QimenPosCase):
    def test_filters_match_the_badge(self):
        synced, vacuumed = self.paid_order(), self.paid_order()
        self.dispatch()
        self.jobs(vacuumed).unlink()  # what the retention period does to sent updates
        skipped = self.paid_order()
        self.jobs(skipped).action_cancel()
        self.sandbox.add_fault("isv")
        failed = self.paid_order()
        self.dispatch()
        self.sandbox.clear()
        pending = self.paid_order()
        self.company.qimen_enabled = False
        not_needed = self.paid_order()
        self.company.write({"qimen_enabled": True, "qimen_app_key": False})
        misconfigured = self.paid_order()
        expected = {
            synced: "synced",
            vacuumed: "synced",
            skipped: "not_needed",
            pending: "pending",
            failed: "failed",
            misconfigured: "failed",
            not_needed: "not_needed",
        }
        orders = self.env["pos.order"].concat(*expected)
        for order, state in expected.items():
            self.assertEqual(order.qimen_sync_state, state, order.name)
        Order = self.env["pos.order"]
        for state in ("synced", "pending", "failed", "not_needed"):
            with self.subTest(state):
                wanted = orders.filtered(lambda o, s=state: expected[o] == s)
                found = Order.search([("id", "in", orders.ids), ("qimen_sync_state", "=", state)])
                self.assertEqual(found, wanted)
                found = Order.search([("id", "in", orders.ids), ("qimen_sync_state", "!=", state)])
                self.assertEqual(found, orders - wanted)
        found = Order.search(
            [("id", "in", orders.ids), ("qimen_sync_state", "in", ["pending", "failed"])]
        )
        self.assertEqual(found, pending | failed | misconfigured)

    def test_attempts_are_those_of_the_waiting_update(self):
        order = self.paid_order()
        self.sandbox.add_fault("http500", count=2)
        self.dispatch()
        confirm = self.jobs(order)[0]
        self.expire_backoff(confirm)
        self.dispatch()
        self.assertEqual((confirm.state, confirm.attempts), ("failed", 2))
        self.assertEqual(order.qimen_sync_attempts, 2)
        self.expire_backoff(confirm)
        self.dispatch()
        self.assertEqual(order.qimen_sync_state, "synced")
        self.assertEqual(order.qimen_sync_attempts, 0)

    def test_the_dispatcher_never_writes_the_order(self):
        order = self.paid_order()
        self.env.flush_all()
        self.env.cr.execute("SELECT ctid FROM pos_order WHERE id = %s", [order.id])
        row_version = self.env.cr.fetchone()[0]  # any UPDATE makes a new row version
        self.sandbox.add_fault("isv", count=1)  # dead: chatter and a to-do, still no write
        self.dispatch()
        self.env.flush_all()
        self.assertEqual(self.jobs(order).mapped("state"), ["dead", "pending"])
        self.env.cr.execute("SELECT ctid FROM pos_order WHERE id = %s", [order.id])
        self.assertEqual(self.env.cr.fetchone()[0], row_version)

    def test_a_session_close_queues_in_one_insert(self):
        orders = [self.paid_order() for _i in range(5)]
        self.dispatch()
        session = self.config.current_session_id
        with self.executed_queries() as executed:
            session.post_closing_cash_details(sum(session.order_ids.payment_ids.mapped("amount")))
            session.close_session_from_ui()
        self.assertEqual(session.state, "closed")
        self.assertEqual(len(job_inserts(executed)), 1)
        for order in orders:
            self.assertIn("complete", self.jobs(order).mapped("event"))

    def test_one_pos_call_queues_its_orders_in_one_insert(self):
        """An offline till catching up sends many orders in one call."""
        if not self.config.current_session_id:
            self.open_new_session()
        orders = [self.create_ui_order_data([(self.product1, 1)]) for _i in range(3)]
        with self.executed_queries() as executed:
            result = self.env["pos.order"].sync_from_ui(orders)
        self.assertEqual(len(job_inserts(executed)), 1)
        returned = result["pos.order"]
        self.assertEqual(len(returned), 3)
        self.assertEqual({data["qimen_sync_state"] for data in returned}, {"pending"})
        paid = self.env["pos.order"].browse([data["id"] for data in returned])
        self.assertEqual(len(self.Job.search([("order_id", "in", paid.ids)])), 6)
