import os
from datetime import timedelta

from odoo.exceptions import AccessError, UserError
from odoo.modules.migration import load_script
from odoo.modules.module import get_module_path
from odoo.tests import Form, TransactionCase, new_test_user, tagged

from ..qimen.timeutil import to_gmt8
from .common import QimenPosCase

OLD_UNIQUE_INDEX = (
    "CREATE UNIQUE INDEX qimen_sync_job_live_update_uniq ON qimen_sync_job "
    "(company_id, bill_code, event) WHERE state NOT IN ('superseded', 'cancelled')"
)


@tagged("post_install", "-at_install")
class TestResend(QimenPosCase):
    """Send again: one update per order with its whole current state, for an ERP that
    lost what it received."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            "qimen_resend_manager",
            groups="point_of_sale.group_pos_manager",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )
        cls.cashier = new_test_user(
            cls.env,
            "qimen_resend_cashier",
            groups="point_of_sale.group_pos_user",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )

    def wizard(self, orders=None, user=None, **values):
        """The wizard as a manager opens it: from the menu, or on ``orders`` selected in
        the order list."""
        wizards = self.env["qimen.resend.wizard"].with_user(user or self.manager)
        if orders is not None:
            wizards = wizards.with_context(active_model="pos.order", active_ids=orders.ids)
        return wizards.create(values)

    def resends(self, order):
        return self.jobs(order).filtered(lambda job: job.event == "resend")

    def close_session(self):
        session = self.config.current_session_id
        session.post_closing_cash_details(sum(session.order_ids.payment_ids.mapped("amount")))
        session.close_session_from_ui()
        self.assertEqual(session.state, "closed")

    def test_each_order_is_sent_once_with_its_whole_current_state(self):
        picked_up = self.paid_order()
        voided = self.draft_order()
        voided.write({"qimen_void_type": "0", "qimen_void_reason": "不想买了"})
        voided.action_pos_order_cancel()
        self.company.qimen_pickup_on_paid = False
        completed = self.paid_order()
        self.dispatch_all()
        self.close_session()  # completes the paid orders
        self.dispatch_all()
        self.company.qimen_enabled = False
        unsynced = self.paid_order()  # in a new session; records nothing: the ERP never knew it
        self.company.qimen_enabled = True
        later = self.paid_order()
        self.dispatch_all()
        self.sandbox.clear()
        orders = picked_up | voided | completed
        self.env.flush_all()
        before = orders.read(["write_date", "qimen_confirm", "qimen_delivery", "qimen_finished"])
        sent_before = {
            order: (order.qimen_sent_confirm_state, order.qimen_sent_complete_state)
            for order in orders
        }

        form = Form(self.env["qimen.resend.wizard"].with_user(self.manager))
        self.assertEqual(form.order_count, 4, "the orders that recorded events, not the unsynced")
        form.date_to = min(orders.mapped("date_order")) - timedelta(seconds=1)
        self.assertEqual(form.order_count, 0, "ordered before the range")
        form.date_to = False
        form.date_from = max((orders | later).mapped("date_order")) + timedelta(seconds=1)
        self.assertEqual(form.order_count, 0, "ordered after the range")
        form.date_from = False
        form.config_ids.add(self.config)
        form.session_id = picked_up.session_id
        self.assertEqual(form.order_count, 3, "the first session's")
        wizard = form.save()
        notice = wizard.action_resend()
        self.assertIn("3 orders queued", notice["params"]["message"])
        self.assertFalse(self.resends(unsynced) | self.resends(later))
        self.assertEqual(picked_up.qimen_sync_state, "pending", "a resend waits like any update")

        self.dispatch_all()
        calls = self.sandbox.calls("accepted")
        self.assertEqual(len(calls), 3, "one call per order")
        sent = {call.params["orderBillCode"]: call.params for call in calls}
        for order in orders:
            job = self.resends(order)
            self.assertEqual(job.state, "done")
            self.assertEqual(sent[order.qimen_bill_code], job.payload)
            self.assertEqual(job.status, job.payload["status"])
        params = sent[voided.qimen_bill_code]
        self.assertEqual(params["status"], "3")
        self.assertEqual((params["cancle"], params["zf_type"]), ("1", "0"))
        self.assertEqual(params["zf_message"], "不想买了")
        self.assertEqual(params["cancleDate"], to_gmt8(voided.qimen_cancel_date))
        params = sent[completed.qimen_bill_code]
        self.assertEqual((params["status"], params["confirm"], params["finish"]), ("1", "2", "1"))
        self.assertEqual(params["finishDate"], to_gmt8(completed.qimen_finish_date))
        self.assertNotIn("delivery", params)
        params = sent[picked_up.qimen_bill_code]
        self.assertEqual((params["status"], params["delivery"]), ("2", "1"))
        self.assertEqual((params["confirm"], params["finish"]), ("2", "1"), "the whole state")

        self.env.invalidate_all()
        self.assertEqual(orders.read(list(before[0])), before, "no order was written")
        for order in orders:
            self.assertEqual(order.qimen_sync_state, "synced")
            self.assertEqual(
                (order.qimen_sent_confirm_state, order.qimen_sent_complete_state),
                sent_before[order],
                "a resend is none of the order's own updates",
            )

    def test_a_resend_is_queued_once_while_it_waits_and_again_once_acknowledged(self):
        order = self.paid_order()
        self.dispatch_all()
        self.sandbox.clear()
        self.wizard(order).action_resend()
        notice = self.wizard(order).action_resend()
        self.assertIn("1 orders were already waiting", notice["params"]["message"])
        self.assertEqual(len(self.resends(order)), 1)
        self.dispatch_all()
        self.assertEqual(self.resends(order).state, "done")

        self.wizard(order).action_resend()  # the ERP lost it again
        first, second = self.resends(order)
        self.assertEqual((first.state, second.state), ("done", "pending"))
        self.dispatch_all()
        self.assertEqual(second.state, "done")
        self.assertEqual(len(self.sandbox.calls("accepted")), 2)

    def test_a_cancelled_resend_retried_after_a_newer_one_is_superseded(self):
        order = self.paid_order()
        self.dispatch_all()
        self.wizard(order).action_resend()
        cancelled = self.resends(order).with_user(self.manager)
        cancelled.action_cancel()
        self.wizard(order).action_resend()
        newer = self.resends(order) - cancelled
        self.assertEqual(newer.state, "pending")
        cancelled.action_retry()  # the unique index would refuse it back
        self.assertEqual((cancelled.state, newer.state), ("superseded", "pending"))

    def test_a_resend_goes_after_the_updates_of_its_order_still_waiting(self):
        self.sandbox.add_fault("isp", count=1)
        order = self.paid_order()
        self.dispatch()
        confirm, pickup = self.jobs(order)
        self.assertEqual((confirm.state, pickup.state), ("failed", "pending"))
        order.qimen_shipping_sn = "SF1234567890"  # known since: only the resend carries it
        self.wizard(order).action_resend()
        resend = self.resends(order)
        self.dispatch()
        self.assertEqual(resend.state, "pending", "it waits for the failed confirmation")
        self.assertFalse(self.sandbox.calls("accepted"))
        self.expire_backoff(confirm)
        self.dispatch_all()
        self.assertEqual((confirm | pickup | resend).mapped("state"), ["done"] * 3)
        sent = [
            (call.params["status"], call.params.get("shippingSn"))
            for call in self.sandbox.calls("accepted")
        ]
        self.assertEqual(sent, [("1", None), ("2", None), ("2", "SF1234567890")])

    def test_managers_only(self):
        order = self.paid_order()
        with self.assertRaises(AccessError):
            self.wizard(user=self.cashier)
        with self.assertRaises(AccessError):
            self.wizard(order, user=self.cashier)
        action = self.env.ref("pos_qimen_sync.qimen_resend_wizard_action")
        Actions = self.env["ir.actions.actions"]
        for user, offered in ((self.manager, True), (self.cashier, False)):
            bindings = Actions.with_user(user).get_bindings("pos.order").get("action", [])
            self.assertEqual(action.id in [b["id"] for b in bindings], offered, user.name)
        menu = self.env.ref("pos_qimen_sync.qimen_resend_wizard_menu")
        self.assertEqual(menu.groups_id, self.env.ref("point_of_sale.group_pos_manager"))

    def test_other_companies_orders_are_never_included(self):
        ours, theirs = self.paid_order(), self.paid_order()
        other = self.env["res.company"].create({"name": "Other Qimen Co"})
        other.write(
            {
                "qimen_enabled": True,
                "qimen_gateway": "custom",
                "qimen_custom_url": self.sandbox.url,
                "qimen_app_key": "other-app",
                "qimen_app_secret": "other-secret",
                "qimen_customerid": "OTHER_ERP",
            }
        )
        theirs.sudo().company_id = other  # an order of a company that syncs too
        self.manager.company_ids |= other
        wizard = self.wizard()
        self.assertEqual(wizard.company_id, self.company)
        self.assertEqual(wizard.order_count, 1)
        wizard.action_resend()
        self.assertTrue(self.resends(ours))
        self.assertFalse(self.Job.search([("event", "=", "resend"), ("company_id", "=", other.id)]))
        with self.assertRaisesRegex(UserError, "one company at a time"):
            self.wizard(ours | theirs)

    def test_a_company_that_does_not_sync_is_refused(self):
        order = self.paid_order()
        self.company.qimen_enabled = False
        with self.assertRaisesRegex(UserError, "disabled"):
            self.wizard(order).action_resend()
        self.company.qimen_enabled = True
        self.company.qimen_customerid = False
        self.config.qimen_customerid = False
        with self.assertRaisesRegex(UserError, "customer ID .*PoS Shop Test"):
            self.wizard(order).action_resend()
        self.assertFalse(self.resends(order))

    def test_nothing_to_send_is_refused(self):
        draft = self.draft_order()  # neither paid nor voided: the ERP has nothing of it
        wizard = self.wizard(draft)
        self.assertEqual(wizard.order_count, 0)
        with self.assertRaisesRegex(UserError, "nothing to send"):
            wizard.action_resend()


@tagged("post_install", "-at_install")
class TestResendMigration(TransactionCase):
    def test_the_migration_recreates_the_unique_index_with_the_resend_predicate(self):
        cr = self.env.cr
        cr.execute("DROP INDEX qimen_sync_job_live_update_uniq")
        cr.execute(OLD_UNIQUE_INDEX)  # as 18.0.1.0.0 made it
        path = os.path.join(
            get_module_path("pos_qimen_sync"), "migrations", "18.0.1.1.0", "post-migrate.py"
        )
        load_script(path, "pos_qimen_sync_post_migrate").migrate(cr, "18.0.1.0.0")
        cr.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'qimen_sync_job_live_update_uniq'"
        )
        (definition,) = cr.fetchone()
        self.assertIn("UNIQUE", definition)
        self.assertIn("'resend'", definition)
        self.assertIn("'done'", definition)
