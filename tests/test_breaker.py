from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from ..qimen import QimenClient
from .common import APP_SECRET, QimenPosCase

LANES_LOGGER = "odoo.addons.pos_qimen_sync.dispatch.lanes"


@tagged("post_install", "-at_install")
class TestBreaker(QimenPosCase):
    """Systemic failures (the gateway out, a rotated secret) pause the company's sending
    instead of killing its updates one by one; one to-do tells its managers."""

    def setUp(self):
        super().setUp()
        self.orders = [self.paid_order() for _index in range(6)]  # 12 updates
        self.all_jobs = self.Job.search([("order_id", "in", [o.id for o in self.orders])])
        self.health_of = self.env["qimen.sync.health"].sudo()

    def health(self):
        return self.health_of.search([("company_id", "=", self.company.id)])

    def probe_due(self):
        self.health().next_probe = fields.Datetime.now() - timedelta(seconds=1)

    def alerts(self):
        return self.health().activity_ids

    def assert_sent_in_order(self):
        """Every update acknowledged, each order's paid before its pick-up."""
        self.assertEqual(set(self.all_jobs.mapped("state")), {"done"})
        accepted = [call.params["orderBillCode"] for call in self.sandbox.calls("accepted")]
        for order in self.orders:
            statuses = [
                call.params["status"]
                for call in self.sandbox.calls("accepted")
                if call.params["orderBillCode"] == order.qimen_bill_code
            ]
            self.assertEqual(statuses, ["1", "2"], order.qimen_bill_code)
        self.assertEqual(len(accepted), 12)

    def test_a_gateway_out_pauses_sending_then_a_probe_resumes_it(self):
        self.sandbox.add_fault("http500")
        self.dispatch_quietly()
        health = self.health()
        self.assertEqual((health.state, health.reason), ("paused", "gateway"))
        # four orders failed, then it paused; the lane had taken its next call meanwhile
        self.assertEqual(len(self.sandbox.calls()), 5)
        self.assertFalse(self.all_jobs.filtered(lambda job: job.state == "dead"))
        self.assertEqual(set(self.all_jobs.mapped("attempts")), {0}, "attempts untouched")
        (alert,) = self.alerts()
        self.assertTrue(alert.user_id.has_group("point_of_sale.group_pos_manager"))
        self.assertIn("paused", alert.summary)
        self.assertIn("12", str(alert.note), "the updates that wait")
        # paused: nothing goes out until the probe is due, then one call at a time
        self.dispatch_quietly()
        self.assertEqual(len(self.sandbox.calls()), 5)
        self.probe_due()
        self.dispatch_quietly()
        self.assertEqual(len(self.sandbox.calls()), 6, "one probe")
        self.assertEqual((health.state, health.probes, health.probe_interval), ("paused", 1, 60))
        self.assertEqual(self.alerts(), alert, "the same to-do, kept up to date")
        self.assertIn("1 tries failed", str(alert.note))
        # marked done by a manager while paused, it is not sent again for this incident
        alert.with_user(alert.user_id).action_feedback(feedback="we know")
        self.probe_due()
        self.dispatch_quietly()
        self.assertEqual((health.probes, len(self.sandbox.calls())), (2, 7))
        self.assertFalse(self.alerts())
        self.assertEqual(set(self.all_jobs.mapped("attempts")), {0})
        # the gateway is back: the next probe goes through, and everything follows
        self.sandbox.clear()
        self.probe_due()
        self.dispatch_quietly()
        self.assertEqual(health.state, "running")
        self.assert_sent_in_order()

    def test_a_probe_that_crashes_before_any_answer_does_not_resume(self):
        """A bug of ours (or data refused before the call) tells nothing of the gateway."""
        self.sandbox.add_fault("http500")
        self.dispatch_quietly()
        self.sandbox.clear()
        self.probe_due()
        with (
            patch.object(QimenClient, "call", side_effect=RuntimeError("a bug")),
            mute_logger(LANES_LOGGER),
        ):
            self.dispatch_quietly()
        health = self.health()
        self.assertEqual(health.state, "paused")
        crashed = self.all_jobs.filtered(lambda job: "Unexpected error" in (job.last_error or ""))
        self.assertEqual(len(crashed), 1, "the probe ran, and crashed")
        self.assertFalse(self.sandbox.calls())
        self.probe_due()
        self.dispatch_quietly()  # the real gateway, back
        self.assertEqual(health.state, "running")
        self.assert_sent_in_order()

    def test_a_company_whose_sync_is_off_is_not_probed(self):
        self.sandbox.add_fault("http500")
        self.dispatch_quietly()
        health = self.health()
        self.assertEqual(health.state, "paused")
        self.company.qimen_enabled = False
        self.sandbox.clear()
        self.probe_due()
        self.dispatch_quietly()
        self.assertEqual(self.sandbox.calls(), [], "no call while its sync is off")
        self.assertEqual((health.state, health.probes), ("paused", 0))
        self.company.qimen_enabled = True  # saved: sending resumes, in order
        self.assertEqual(health.state, "running")
        self.dispatch_quietly()
        self.assert_sent_in_order()

    def test_the_alert_is_closed_with_a_note_once_what_waited_was_sent(self):
        self.sandbox.add_fault("http500")
        self.dispatch_quietly()
        (alert,) = self.alerts()
        self.sandbox.clear()
        self.probe_due()
        self.dispatch_quietly()
        self.assert_sent_in_order()
        self.assertFalse(alert.exists(), "closed once what waited was sent")
        feedback = self.health().message_ids.filtered(lambda m: "Resumed after" in str(m.body))
        self.assertEqual(len(feedback), 1)
        self.assertIn("12 updates sent", str(feedback.body))

    def test_a_rotated_secret_pauses_sending_until_the_settings_are_saved(self):
        self.sandbox.add_fault("signature")
        self.dispatch_quietly()
        health = self.health()
        self.assertEqual((health.state, health.reason), ("paused", "credentials"))
        # two orders refused, then it paused (the lane's next call was under way)
        self.assertEqual(len(self.sandbox.calls()), 3, "the gateway is not hammered")
        self.assertFalse(self.all_jobs.filtered(lambda job: job.state == "dead"))
        self.assertIn("App Secret", str(self.alerts().note))
        self.sandbox.clear()
        self.company.qimen_app_secret = APP_SECRET  # the new secret, saved
        self.assertEqual(health.state, "running")
        self.dispatch_quietly()
        self.assert_sent_in_order()
        self.assertFalse(self.alerts())

    def test_an_order_s_own_failure_pauses_nothing_and_dies_alone(self):
        broken = self.orders[0]
        self.sandbox.add_fault("isv", bill_codes=[broken.qimen_bill_code])
        self.dispatch_quietly()
        self.assertEqual(self.health().state, "running")
        self.assertEqual(self.jobs(broken).mapped("state"), ["dead", "pending"])
        others = self.all_jobs - self.jobs(broken)
        self.assertEqual(set(others.mapped("state")), {"done"})

    def test_dead_updates_are_summed_up_in_one_to_do_an_hour(self):
        for order in self.orders[:3]:
            self.sandbox.add_fault("failure", bill_codes=[order.qimen_bill_code])
        self.dispatch_quietly()
        (summary,) = self.alerts()
        for order in self.orders[:3]:
            self.assertIn(order.qimen_bill_code, str(summary.note))
        self.assertFalse(self.orders[0].activity_ids, "no to-do per order")
        # the manager it is for reads it and marks it done (POS managers only read the
        # company's sync health)
        summary.with_user(summary.user_id).action_feedback(feedback="fixed the SKUs")
        self.assertFalse(summary.exists())
        # the next dead update opens a new summary (the last one is done)
        late = self.paid_order()
        self.sandbox.add_fault("failure", bill_codes=[late.qimen_bill_code])
        self.dispatch_quietly()
        (second,) = self.alerts()
        self.assertIn(late.qimen_bill_code, str(second.note))
        # within the hour, a later one joins it; an hour later, a new summary
        later = self.paid_order()
        self.sandbox.add_fault("failure", bill_codes=[later.qimen_bill_code])
        self.dispatch_quietly()
        self.assertEqual(self.alerts(), second)
        self.assertIn(later.qimen_bill_code, str(second.note))
        self.env.cr.execute(
            "UPDATE mail_activity SET create_date = %s WHERE id = %s",
            [fields.Datetime.now() - timedelta(hours=2), second.id],
        )
        second.invalidate_recordset()
        last = self.paid_order()
        self.sandbox.add_fault("failure", bill_codes=[last.qimen_bill_code])
        self.dispatch_quietly()
        self.assertEqual(len(self.alerts()), 2)

    def test_the_dead_summary_is_closed_once_no_update_of_it_waits(self):
        first, second = self.orders[:2]
        for order in (first, second):
            self.sandbox.add_fault("failure", bill_codes=[order.qimen_bill_code])
        self.dispatch_quietly()
        (summary,) = self.alerts()
        self.sandbox.clear()
        first.action_qimen_sync_now()  # fixed in the ERP, sent again: sent
        self.dispatch_quietly()
        self.assertEqual(self.jobs(first).mapped("state"), ["done", "done"])
        self.assertTrue(summary.exists(), "the second order's update still waits")
        dead = self.jobs(second).filtered(lambda job: job.state == "dead")
        manager = new_test_user(  # a manager the to-do is not for
            self.env,
            "qimen_other_manager",
            groups="point_of_sale.group_pos_manager",
            company_id=self.company.id,
            company_ids=[(6, 0, self.company.ids)],
        )
        self.assertNotEqual(summary.user_id, manager)
        dead.with_user(manager).action_cancel()  # withdrawn
        self.assertFalse(summary.exists(), "closed: nothing it listed waits any more")
        feedback = self.health().message_ids.filtered(lambda m: "Resolved" in str(m.body))
        self.assertEqual(len(feedback), 1)
        self.assertIn("1 sent", str(feedback.body))
        self.assertFalse(self.health().dead_activity_id)
        # a later death opens a new summary
        late = self.paid_order()
        self.sandbox.add_fault("failure", bill_codes=[late.qimen_bill_code])
        self.dispatch_quietly()
        self.assertEqual(len(self.alerts()), 1)
        self.assertNotEqual(self.alerts(), summary)

    def test_a_single_order_refused_by_the_gateway_dies_after_its_attempts(self):
        """A signature refused for one order only (its data, not the secret) is retried
        like a transient failure, and dies of its own attempts, pausing nothing."""
        broken = self.orders[0]
        confirm = self.jobs(broken)[0]
        self.sandbox.add_fault("signature", bill_codes=[broken.qimen_bill_code])
        for _attempt in range(3):
            self.dispatch_quietly()
            self.expire_backoff(confirm)
        self.assertEqual((confirm.state, confirm.attempts), ("dead", 3))
        self.assertEqual(self.health().state, "running")
