import logging
from datetime import timedelta
from unittest.mock import patch

import psycopg2

from odoo import fields, sql_db
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from odoo.addons.point_of_sale.models.pos_order import PosOrder as PointOfSaleOrder

from .. import payload
from ..qimen.client import QimenClient
from ..qimen.signing import sign, verify
from ..qimen.timeutil import to_gmt8
from .common import APP_SECRET, QimenPosCase


@tagged("post_install", "-at_install")
class TestOutboundTransitions(QimenPosCase):
    def test_the_paid_hook_writes_in_the_pos_own_update_of_the_order(self):
        """The till's transaction gains the job's insert, not one more UPDATE of its
        order: the hook writes before point_of_sale flushes the paid order."""
        execute, updates = sql_db.Cursor.execute, []

        def counting(cr, query, params=None, log_exceptions=True):
            if str(getattr(query, "code", query)).lstrip().startswith('UPDATE "pos_order"'):
                updates.append(query)
            return execute(cr, query, params, log_exceptions)

        counts = {}
        for enabled in (False, True):
            self.company.qimen_enabled = enabled
            self.env.flush_all()
            updates.clear()
            with patch.object(sql_db.Cursor, "execute", counting):
                order = self.paid_order()
                self.env.flush_all()
            counts[enabled] = len(updates)
            self.assertEqual(bool(self.jobs(order)), enabled)
        self.assertEqual(counts[True], counts[False])
        self.assertEqual(order.qimen_confirm, "1")

    def test_paying_writes_the_sync_facts_with_the_paid_state(self):
        """The order is written once when it is paid, by point_of_sale: the sync's facts
        go in that write() (one of their own cost the till a fifth of the hook)."""
        write, written = PointOfSaleOrder.write, []

        def recording(records, vals):
            written.append(dict(vals))
            return write(records, vals)

        with patch.object(PointOfSaleOrder, "write", recording):
            order = self.paid_order()
        ours = [vals for vals in written if "qimen_confirm" in vals]
        self.assertEqual(len(ours), 1)
        self.assertEqual(ours[0]["state"], "paid")
        self.assertEqual((ours[0]["qimen_confirm"], ours[0]["qimen_delivery"]), ("1", "1"))
        self.assertEqual(self.jobs(order).mapped("event"), ["confirm", "pickup"])

    def test_an_override_writing_the_paid_state_alone_still_records_the_payment(self):
        def paid_elsewhere(records):
            records.with_context(qimen_paid=None).write({"state": "paid"})
            return True

        with patch.object(PointOfSaleOrder, "action_pos_order_paid", paid_elsewhere):
            order = self.paid_order()
        self.assertEqual((order.qimen_confirm, order.qimen_delivery), ("1", "1"))
        confirm, pickup = self.jobs(order)
        self.assertNotIn("delivery", confirm.payload)
        self.assertEqual(pickup.payload["delivery"], "1")

    def test_a_payment_that_fails_records_nothing(self):
        order = self.draft_order()
        with self.assertRaisesRegex(UserError, "not fully paid"):
            order.action_pos_order_paid()
        self.assertEqual(order.state, "draft")
        self.assertFalse(order.qimen_confirm)
        self.assertFalse(self.jobs(order))

    def test_paid_from_the_pos_ui_sends_confirm_then_pickup(self):
        order = self.paid_order()
        self.assertEqual(order.state, "paid")
        jobs = self.jobs(order)
        self.assertEqual(jobs.mapped("event"), ["confirm", "pickup"])
        self.assertEqual(jobs.mapped("state"), ["pending", "pending"])
        self.assertEqual(order.qimen_sync_state, "pending")
        self.assertFalse(self.sandbox.calls(), "nothing is sent inside sync_from_ui")

        self.dispatch()  # one per order per batch: the pickup waits for the confirm
        self.dispatch()
        self.assertEqual(jobs.mapped("state"), ["done", "done"])
        confirm, pickup = self.sandbox.calls("accepted")
        self.assertEqual(confirm.method, "qimen.taobao.pos.salesorder.update")
        self.assertEqual(confirm.query["app_key"], "pos-app-1")
        self.assertEqual(confirm.query["target_app_key"], "erp-9")
        params = confirm.params
        self.assertEqual(f"Order {params['orderBillCode']}", order.pos_reference)
        self.assertEqual(order.qimen_bill_code, params["orderBillCode"])
        self.assertEqual(params["status"], "1")
        self.assertEqual(params["customerid"], "STORE_ERP_01")
        self.assertEqual(params["confirm"], "1")
        self.assertEqual(params["confirmor"], order.user_id.name)
        self.assertEqual(params["confirmDate"], to_gmt8(order.qimen_confirm_date))
        self.assertNotIn("delivery", params)
        self.assertIn('"posOrder":"%s"' % order.name, params["extendProps"])
        self.assertEqual(pickup.params["status"], "2")
        self.assertEqual(pickup.params["delivery"], "1")
        self.assertEqual(pickup.params["deliveryDate"], to_gmt8(order.qimen_delivery_date))
        self.assertEqual(pickup.params["confirm"], "1", "each update carries the whole state")
        order.invalidate_recordset()
        self.assertEqual(order.qimen_sync_state, "synced")
        self.assertEqual(order.qimen_sync_attempts, 0, "no update waits: no failed attempt")
        self.assertTrue(order.qimen_last_sync)
        self.assertFalse(order.qimen_last_error)

    def test_signature_recorded_request_and_no_secret(self):
        order = self.paid_order()
        sent = []
        original = QimenClient._post

        def spy(client, query, body):
            sent.append((dict(query), dict(body)))
            return original(client, query, body)

        with patch.object(QimenClient, "_post", spy):
            self.dispatch()
        job = self.jobs(order)[0]
        self.assertEqual(len(sent), 2, "confirm, then pickup")
        query, body = sent[0]
        signature = query.pop("sign")
        self.assertTrue(verify({**query, **body}, APP_SECRET, signature, "md5"))
        self.assertEqual(signature, sign({**query, **body}, APP_SECRET, "md5"))
        self.assertEqual(body, job.payload)
        self.assertEqual(job.last_request, {"query": dict(query, sign="***")})
        for value in (
            job.last_reply,
            str(job.last_request),
            str(job.payload),
            job.last_error or "",
        ):
            self.assertNotIn(APP_SECRET, value)
            self.assertNotIn(signature, value)

    def test_take_home_rule_is_configurable(self):
        self.company.qimen_pickup_on_paid = False
        order = self.paid_order()
        self.assertEqual(self.jobs(order).mapped("event"), ["confirm"])

    def test_back_office_payment(self):
        order = self.draft_order()
        self.assertFalse(self.jobs(order))
        self.make_payment(order, self.cash_pm1, order.amount_total)
        self.assertEqual(order.state, "paid")
        self.assertEqual(self.jobs(order).mapped("event"), ["confirm", "pickup"])

    def test_back_office_order_without_pos_reference(self):
        if not self.config.current_session_id:
            self.open_new_session()
        order = self.env["pos.order"].create(
            {
                "session_id": self.config.current_session_id.id,
                "lines": [
                    (
                        0,
                        0,
                        {
                            "product_id": self.product1.id,
                            "qty": 1,
                            "price_unit": 10,
                            "price_subtotal": 10,
                            "price_subtotal_incl": 10,
                        },
                    )
                ],
                "amount_total": 10,
                "amount_tax": 0,
                "amount_paid": 0,
                "amount_return": 0,
            }
        )
        self.assertFalse(order.pos_reference)
        self.make_payment(order, self.cash_pm1, 10)
        self.assertEqual(order.qimen_bill_code, order.name)
        self.assertEqual(self.jobs(order).mapped("bill_code"), [order.name, order.name])
        found, error = self.env["pos.order"]._qimen_find_by_bill_code(self.company, order.name)
        self.assertEqual((found, error), (order, None), "the ERP can call back about it")

    def test_bill_code_is_the_tills_number_in_every_language(self):
        """The till translates the first word of its reference: the ERP must not see it."""
        if not self.config.current_session_id:
            self.open_new_session()
        english = self.create_ui_order_data([(self.product1, 1)], uuid="00003-001-0001")
        chinese = self.create_ui_order_data([(self.product1, 1)], uuid="00003-004-0005")
        chinese["name"] = "订单 00003-004-0005"
        english, chinese = self._sync_order(english), self._sync_order(chinese)
        self.assertEqual(english.pos_reference, "Order 00003-001-0001")
        self.assertEqual(
            (english.qimen_bill_code, chinese.qimen_bill_code), ("00003-001-0001", "00003-004-0005")
        )
        self.dispatch()
        sent = {call.params["orderBillCode"] for call in self.sandbox.calls("accepted")}
        self.assertEqual(sent, {"00003-001-0001", "00003-004-0005"})

    def test_bill_code_prefix_of_the_shop(self):
        if not self.config.current_session_id:
            self.open_new_session()
        before = self.paid_order()
        code_before = before.qimen_bill_code
        self.config.qimen_bill_code_prefix = "SH01-"
        after = self.paid_order(uuid="00042-002-0007")
        self.assertEqual(after.qimen_bill_code, "SH01-00042-002-0007")
        self.assertEqual(before.qimen_bill_code, code_before, "an order keeps its code")
        self.assertFalse(code_before.startswith("SH01-"))
        self.dispatch()
        sent = {call.params["orderBillCode"] for call in self.sandbox.calls("accepted")}
        self.assertEqual(sent, {code_before, "SH01-00042-002-0007"})
        # a reference that is not the till's: kept, without its spaces
        other = self.create_ui_order_data([(self.product1, 1)])
        other["name"] = "Imported 7 B"
        self.assertEqual(self._sync_order(other).qimen_bill_code, "SH01-Imported7B")
        for bad in ("SH 01", "店01", "X" * 17, "a/b"):
            with self.subTest(prefix=bad), self.assertRaises(ValidationError):
                self.config.qimen_bill_code_prefix = bad

    def test_the_bill_code_goes_in_the_new_orders_insert(self):
        """Computed after the INSERT, it read the new row back: a query of the till's for
        every order it pays."""
        if not self.config.current_session_id:
            self.open_new_session()
        self.config.qimen_bill_code_prefix = "SH02-"
        data = self.create_ui_order_data([(self.product1, 1)], uuid="00042-003-0009")
        with self.executed_queries() as executed:
            order = self._sync_order(data)
        (insert,) = [q for q in executed if q.startswith('INSERT INTO "pos_order" ')]
        self.assertIn('"qimen_bill_code"', insert)
        reads = [
            q for q in executed if q.startswith("SELECT") and '"pos_order"."qimen_bill_code"' in q
        ]
        self.assertEqual(reads, [], "the till read the new order's row back for its bill code")
        self.assertEqual(order.qimen_bill_code, "SH02-00042-003-0009")
        self.assertEqual(self.jobs(order).mapped("bill_code"), ["SH02-00042-003-0009"] * 2)
        # a code given with the order is kept (the back office, an import)
        given = self.env["pos.order"].create(
            {
                "session_id": self.config.current_session_id.id,
                "pos_reference": "Order 00042-003-0010",
                "qimen_bill_code": "IMPORTED-1",
                "amount_tax": 0,
                "amount_total": 0,
                "amount_paid": 0,
                "amount_return": 0,
            }
        )
        self.assertEqual(given.qimen_bill_code, "IMPORTED-1")

    def test_the_till_does_not_ask_about_dead_updates_of_a_new_order(self):
        """A new order has no job yet (the cache says it): the INSERT that queues the
        till's updates plans no subquery into the jobs for one, and the state is known.
        The dispatcher's trigger goes in the same statement (the transaction has none
        yet): nothing more at the commit."""
        if not self.config.current_session_id:
            self.open_new_session()
        self.env.cr.postcommit.clear()  # a new transaction: it holds no trigger
        data = self.create_ui_order_data([(self.product1, 1)], uuid="00042-003-0011")
        with self.executed_queries() as executed:
            order = self._sync_order(data)
            self.env.cr.flush()  # what the commit runs first
        (insert,) = [q for q in executed if "INSERT INTO qimen_sync_job" in q]
        self.assertNotIn("dead.state", insert)
        triggers = [q for q in executed if "INSERT INTO ir_cron_trigger" in q]
        self.assertEqual(triggers, [insert])
        cron = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch")
        trigger = self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)], order="id desc")
        self.assertEqual(trigger[:1].create_date, order.qimen_job_ids[:1].create_date)
        with self.assertQueryCount(0):
            self.assertEqual(order.qimen_sync_state, "pending")

    def test_cancelled_draft_is_voided_with_its_reason(self):
        order = self.draft_order()
        order.write({"qimen_void_type": "0", "qimen_void_reason": "不想买了"})
        order.action_pos_order_cancel()
        self.assertEqual(order.state, "cancel")
        (job,) = self.jobs(order)
        self.assertEqual(job.event, "void")
        self.dispatch()
        params = self.sandbox.calls("accepted")[0].params
        self.assertEqual(params["status"], "3")
        self.assertEqual(params["cancle"], "1")
        self.assertEqual(params["canceler"], self.env.user.name)
        self.assertEqual(params["cancleDate"], to_gmt8(order.qimen_cancel_date))
        self.assertEqual(params["zf_type"], "0")
        self.assertEqual(params["zf_message"], "不想买了")

    def test_cancel_without_reason_defaults_to_other_reason(self):
        order = self.draft_order()
        order.action_pos_order_cancel()
        self.assertEqual(self.jobs(order).payload["zf_type"], "1")

    def test_removed_draft_still_syncs_from_its_snapshot(self):
        order = self.draft_order()
        bill_code = order.qimen_bill_code
        self.env["pos.order"].remove_from_ui(order.ids)
        self.assertFalse(order.exists())
        job = self.Job.search([("bill_code", "=", bill_code)])
        self.assertEqual(job.event, "void")
        self.assertFalse(job.order_id)
        self.dispatch()
        self.assertEqual(job.state, "done")
        self.assertEqual(self.sandbox.calls("accepted")[0].params["orderBillCode"], bill_code)

    def test_empty_draft_cancelled_is_not_sent(self):
        if not self.config.current_session_id:
            self.open_new_session()
        order = self.env["pos.order"].create(
            {
                "session_id": self.config.current_session_id.id,
                "amount_total": 0,
                "amount_tax": 0,
                "amount_paid": 0,
                "amount_return": 0,
                "lines": [],
            }
        )
        order.action_pos_order_cancel()
        self.assertFalse(self.Job.search([("order_id", "=", order.id)]))

    def test_full_refund_voids_the_original_as_customer_return(self):
        order = self.paid_order()
        refund = order._refund()
        self.make_payment(refund, self.cash_pm1, refund.amount_total)
        self.assertEqual(refund.state, "paid")
        self.assertEqual(refund.refunded_order_id, order)
        self.assertFalse(self.Job.search([("order_id", "=", refund.id)]), "no job of its own")
        void = self.jobs(order).filtered(lambda j: j.event == "void")
        self.assertEqual(void.payload["status"], "3")
        self.assertEqual(void.payload["zf_type"], "0")
        self.assertIn(refund.name, void.payload["zf_message"])
        self.assertEqual(void.payload["orderBillCode"], order.qimen_bill_code)
        # the unsent confirm and pickup are superseded by the void
        self.assertEqual(self.jobs(order).mapped("state"), ["superseded", "superseded", "pending"])

    def _partial_refund(self, order):
        refund = order._refund()
        refund.lines.write({"qty": -1})
        refund.lines._onchange_amount_line_all()
        refund._compute_prices()
        self.make_payment(refund, self.cash_pm1, refund.amount_total)
        return refund

    def test_partial_refund_follows_the_policy(self):
        order = self.paid_order([(self.product1, 2)])
        self._partial_refund(order)
        self.assertNotIn("void", self.jobs(order).mapped("event"))
        self.company.qimen_refund_policy = "any"
        order2 = self.paid_order([(self.product1, 2)])
        self._partial_refund(order2)
        self.assertIn("void", self.jobs(order2).mapped("event"))
        self.company.qimen_refund_policy = "never"
        order3 = self.paid_order([(self.product1, 1)])
        refund = order3._refund()
        self.make_payment(refund, self.cash_pm1, refund.amount_total)
        self.assertNotIn("void", self.jobs(order3).mapped("event"))

    def test_session_close_completes_paid_and_invoiced_orders(self):
        order = self.paid_order()
        invoiced = self.paid_order(customer=self.customer, is_invoiced=True)
        self.assertEqual(invoiced.state, "invoiced")
        session = self.config.current_session_id
        self.dispatch()
        self.dispatch()
        self.dispatch()
        cash = sum(session.order_ids.payment_ids.mapped("amount"))
        session.post_closing_cash_details(cash)
        session.close_session_from_ui()
        self.assertEqual(session.state, "closed")
        self.assertEqual(order.state, "done")
        for done_order in (order, invoiced):
            complete = self.jobs(done_order).filtered(lambda j: j.event == "complete")
            self.assertEqual(complete.payload["status"], "1")
            self.assertEqual(complete.payload["confirm"], "2")
            self.assertEqual(complete.payload["finish"], "1")
            self.assertEqual(complete.payload["finishDate"], to_gmt8(done_order.qimen_finish_date))

    def test_delivery_validated_later_is_a_pickup(self):
        order = self.paid_order(lines=[(self.product1, 1)])
        self.assertEqual(self.jobs(order).mapped("event"), ["confirm", "pickup"])
        later = self.draft_order(customer=self.customer)
        later.shipping_date = fields.Date.today()
        self.make_payment(later, self.cash_pm1, later.amount_total)
        self.assertEqual(self.jobs(later).mapped("event"), ["confirm"], "not yet picked up")
        picking = later.picking_ids
        self.assertTrue(picking)
        picking.move_ids.quantity = 1
        picking.move_ids.picked = True
        picking.button_validate()
        self.assertEqual(picking.state, "done")
        pickup = self.jobs(later).filtered(lambda j: j.event == "pickup")
        self.assertEqual(pickup.payload["delivery"], "1")
        self.assertEqual(pickup.payload["deliveryDate"], to_gmt8(picking.date_done))


@tagged("post_install", "-at_install")
class TestOutboundQueue(QimenPosCase):
    def test_transient_failure_backs_off_then_dies(self):
        """A gateway error is the company's kind of failure: an update dies of it only once
        other orders of the shop got through meanwhile (then it is this order's)."""
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        self.sandbox.add_fault("isp", bill_codes=[order.qimen_bill_code])
        before = fields.Datetime.now()
        self.dispatch()
        self.assertEqual(confirm.state, "failed")
        self.assertEqual(confirm.attempts, 1)
        self.assertIn("isp.remote-service-error", confirm.last_error)
        delay = (confirm.next_attempt - before).total_seconds()
        self.assertTrue(47 <= delay <= 73, delay)  # 60 s +-20 % jitter
        self.assertEqual(order.qimen_sync_state, "pending")
        self.assertIn("isp.remote-service-error", order.qimen_last_error)

        self.dispatch()
        self.assertEqual(confirm.attempts, 1, "not due yet")
        self.expire_backoff(confirm)
        self.dispatch()
        self.assertEqual(confirm.attempts, 2)
        second = (confirm.next_attempt - fields.Datetime.now()).total_seconds()
        self.assertTrue(95 <= second <= 145, second)  # 120 s +-20 %
        self.expire_backoff(confirm)
        self.dispatch()
        # max attempts is 3, but nothing of the shop got through: the gateway may be out
        self.assertEqual((confirm.state, confirm.attempts), ("failed", 3))
        third = (confirm.next_attempt - fields.Datetime.now()).total_seconds()
        self.assertTrue(190 <= third <= 290, third)  # 240 s +-20 %, at most 10 min
        # another order goes through: the gateway works, the failure is this order's
        other = self.paid_order()
        self.dispatch()
        self.assertEqual(self.jobs(other)[0].state, "done")
        self.expire_backoff(confirm)
        self.dispatch()
        self.assertEqual(confirm.state, "dead")
        self.assertEqual(order.qimen_sync_state, "failed")
        pickup = self.jobs(order)[1]
        self.assertEqual(pickup.state, "pending")

    def test_permanent_failure_is_dead_at_once_and_retry_sends_it(self):
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        self.sandbox.add_fault("isv", count=1)
        self.dispatch()
        self.assertEqual(confirm.state, "dead")
        self.assertEqual(confirm.attempts, 1)
        self.assertIn("code 41", confirm.last_error)
        confirm.action_retry()
        self.assertEqual((confirm.state, confirm.attempts), ("pending", 0))
        self.dispatch()
        self.assertEqual(confirm.state, "done")

    def test_each_fault_kind_is_recorded_not_raised(self):
        """An order's own failure kills its update; the company's kind of failure (no
        answer, a refused signature) is retried (several orders in a row of it pause the
        company's sending: test_breaker.py; here each kind meets a company in health)."""
        expected = {
            "failure": "dead",
            "signature": "failed",
            "timeout": "failed",
            "reset": "failed",
            "http500": "failed",
            "garbage": "failed",
        }
        health = self.env["qimen.sync.health"].sudo()
        for kind, state in expected.items():
            with self.subTest(kind=kind):
                health.search([]).unlink()
                order = self.paid_order()
                self.sandbox.add_fault(kind, bill_codes=[order.qimen_bill_code])
                self.dispatch()
                job = self.jobs(order)[0]
                self.assertEqual(job.state, state, job.last_error)
                self.assertTrue(job.last_error)

    def test_newer_update_never_goes_before_an_older_one(self):
        order = self.paid_order()
        confirm, pickup = self.jobs(order)
        self.sandbox.add_fault("http500", count=1)
        self.dispatch()
        self.assertEqual((confirm.state, pickup.state), ("failed", "pending"))
        self.dispatch()
        self.assertEqual(pickup.state, "pending", "blocked behind the failed confirm")
        self.expire_backoff(confirm)
        self.dispatch()
        self.dispatch()
        self.assertEqual((confirm.state, pickup.state), ("done", "done"))
        statuses = [c.params["status"] for c in self.sandbox.calls() if c.verdict == "accepted"]
        self.assertEqual(statuses, ["1", "2"])

    def test_a_dead_update_holds_the_later_ones_of_its_order(self):
        order = self.paid_order()
        confirm, pickup = self.jobs(order)
        other = self.paid_order()
        self.sandbox.add_fault("isv", bill_codes=[order.qimen_bill_code], count=1)
        self.dispatch()
        self.assertEqual((confirm.state, pickup.state), ("dead", "pending"))
        self.assertEqual(set(self.jobs(other).mapped("state")), {"done"}, "other orders flow")
        self.dispatch()
        self.assertEqual(pickup.state, "pending")
        confirm.action_cancel()  # an operator decides to skip it
        self.dispatch()
        self.assertEqual(pickup.state, "done")

    def test_the_state_of_a_queued_update_is_known_without_a_query(self):
        """The till reads the sync state of every order it pays: the insert that queues
        its updates says it (pending, failed while another update is dead), as the
        database's rule would; a void that supersedes a dead update leaves it unknown."""
        stuck = self.paid_order()
        self.sandbox.add_fault("isv", bill_codes=[stuck.qimen_bill_code], count=1)
        self.dispatch()
        self.assertEqual(self.jobs(stuck).mapped("state"), ["dead", "pending"])
        flowing = self.paid_order()
        Order = self.env["pos.order"]
        Order._qimen_queue([(stuck, "complete"), (flowing, "complete")])
        with self.assertQueryCount(0):
            states = (stuck.qimen_sync_state, flowing.qimen_sync_state)
        self.assertEqual(states, ("failed", "pending"))
        (stuck | flowing).invalidate_recordset(["qimen_sync_state"])
        self.assertEqual((stuck.qimen_sync_state, flowing.qimen_sync_state), states)
        Order._qimen_queue([(stuck, "void")])  # supersedes the dead update
        self.assertEqual(stuck.qimen_sync_state, "pending")

    def test_duplicates_are_not_enqueued(self):
        order = self.paid_order()
        self.assertEqual(len(self.jobs(order)), 2)
        self.env["pos.order"]._qimen_queue([(order, "confirm")])
        order._process_saved_order(False)
        self.assertEqual(len(self.jobs(order)), 2)

    def test_disabled_or_incomplete_configuration_enqueues_nothing(self):
        self.company.qimen_enabled = False
        order = self.paid_order()
        self.assertFalse(self.jobs(order))
        self.assertEqual(order.qimen_sync_state, "not_needed")
        self.company.write({"qimen_enabled": True, "qimen_app_key": False})
        order = self.paid_order()
        self.assertFalse(self.jobs(order))
        self.assertEqual(order.qimen_sync_state, "failed")
        self.assertIn("app key", order.qimen_config_error)
        self.assertIn("app key", order.qimen_last_error)

    def test_gateway_failures_never_reach_sync_from_ui(self):
        with (
            patch.object(type(self.Job), "_enqueue", side_effect=RuntimeError("boom")),
            self.assertLogs("odoo.addons.pos_qimen_sync.models.pos_order_events", logging.ERROR),
        ):
            order = self.paid_order()
        self.assertEqual(order.state, "paid")
        self.assertFalse(self.jobs(order))

    def test_rolled_back_pos_transaction_leaves_no_job(self):
        self.open_new_session()
        data = self.create_ui_order_data([(self.product1, 1)])
        with self.assertRaises(ZeroDivisionError), self.env.cr.savepoint():
            self.env["pos.order"].sync_from_ui([data])
            self.assertTrue(self.Job.search([("order_id.uuid", "=", data["uuid"])]))
            1 / 0  # noqa: B018 - the cashier's transaction fails after the hook
        self.assertFalse(self.Job.search([("bill_code", "=", data["name"])]))

    def test_one_exploding_job_does_not_stop_the_batch(self):
        first, second = self.paid_order(), self.paid_order()
        original = QimenClient.call
        exploding = first.qimen_bill_code  # read here: the call runs on a thread of its own

        def call(client, method, params, timestamp=None):
            if params["orderBillCode"] == exploding:
                raise ValueError("corrupt")
            return original(client, method, params, timestamp)

        with (
            patch.object(QimenClient, "call", call),
            self.assertLogs("odoo.addons.pos_qimen_sync.dispatch.lanes", logging.ERROR),
        ):
            self.dispatch()
        self.assertEqual(self.jobs(first)[0].state, "failed")
        self.assertIn("corrupt", self.jobs(first)[0].last_error)
        self.assertEqual(self.jobs(second)[0].state, "done")

    def test_stuck_sending_jobs_are_reclaimed(self):
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        confirm.write(
            {
                "state": "sending",
                "attempts": 1,
                "sending_since": fields.Datetime.now() - timedelta(hours=1),
            }
        )
        self.Job._reclaim_expired()
        self.assertEqual(confirm.state, "failed")
        self.assertIn("Interrupted", confirm.last_error)
        self.expire_backoff(confirm)
        self.dispatch()
        self.assertEqual(confirm.state, "done")

    def test_sync_now_and_retry_go_through_the_dispatcher(self):
        order = self.paid_order()
        confirm, pickup = self.jobs(order)
        self.sandbox.add_fault("isv", count=1)
        self.dispatch()
        self.assertEqual((confirm.state, pickup.state), ("dead", "pending"))
        sending = self.jobs(self.paid_order())[0]
        sending.write({"state": "sending", "sending_since": fields.Datetime.now()})
        (sending | confirm).action_retry()
        self.assertEqual(sending.state, "sending", "a job being sent is left alone")
        self.assertEqual(confirm.state, "pending")
        calls = len(self.sandbox.calls())
        self.assertEqual(calls, 1, "retry itself sends nothing: the dispatcher does")
        self.dispatch()
        self.assertEqual((confirm.state, pickup.state), ("done", "done"))
        sent = [
            c.params["status"]
            for c in self.sandbox.calls("accepted")
            if c.params["orderBillCode"] == order.qimen_bill_code
        ]
        self.assertEqual(sent, ["1", "2"], "the older update first")
        self.assertEqual(sending.state, "sending")
        other = self.paid_order()
        self.sandbox.add_fault("isv", count=1)
        self.dispatch()
        other.action_qimen_sync_now()
        self.dispatch()
        self.assertEqual(set(self.jobs(other).mapped("state")), {"done"})
        with self.assertRaisesRegex(UserError, "nothing|no update"):
            other.action_qimen_sync_now()

    def test_one_cron_trigger_per_transaction(self):
        """However many jobs a transaction queues, and however often its precommit hooks
        run before the commit (at each flushing savepoint: a till's picking opens one per
        order), it holds one trigger for now; the next transaction makes its own."""
        cron = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch")
        Trigger = self.env["ir.cron.trigger"]

        def new_triggers():
            return Trigger.search([("cron_id", "=", cron.id)]) - before

        before = Trigger.search([("cron_id", "=", cron.id)])
        orders = self.paid_order() | self.paid_order() | self.paid_order()
        self.env.cr.flush()  # what a savepoint and the commit run first
        first = new_triggers()
        self.assertEqual(len(first), 1, "three paid orders, one trigger")
        self.assertLessEqual(first.call_at, fields.Datetime.now())
        jobs = self.env["pos.order"]._qimen_queue([(order, "void") for order in orders])
        self.assertEqual(len(jobs), 3)
        self.env.cr.flush()
        self.assertEqual(new_triggers(), first, "the transaction holds one already")
        self.env.cr.postcommit.clear()  # committed (its wake ran): a new transaction
        self.assertFalse(
            self.env["pos.order"]._qimen_queue([(orders[0], "void")]), "queued already"
        )
        self.env.cr.flush()
        self.assertEqual(new_triggers(), first, "nothing queued, no trigger")
        self.paid_order()
        self.env.cr.flush()
        self.assertEqual(len(new_triggers() - first), 1, "a new transaction's jobs: its own")

    def test_retry_refuses_a_disabled_company(self):
        order = self.paid_order()
        self.sandbox.add_fault("isv", count=1)
        self.dispatch()
        self.company.qimen_enabled = False
        with self.assertRaisesRegex(UserError, "disabled"):
            self.jobs(order).action_retry()

    def test_retry_is_superseded_once_a_newer_update_went_out(self):
        for newer_state in ("done", "sending"):
            order = self.paid_order()
            confirm, pickup = self.jobs(order)
            confirm.write({"state": "cancelled"})
            pickup.write({"state": newer_state, "sending_since": fields.Datetime.now()})
            confirm.action_retry()
            self.assertEqual(confirm.state, "superseded", newer_state)

    def test_missed_updates_are_queued_once_the_settings_are_complete(self):
        self.company.qimen_app_secret = False
        order = self.paid_order()
        draft = self.draft_order()
        draft.action_pos_order_cancel()
        self.assertFalse(self.jobs(order) | self.jobs(draft))
        self.assertTrue(order.qimen_config_error and draft.qimen_config_error)
        self.company.qimen_app_secret = APP_SECRET  # what saving the settings does
        self.assertEqual(self.jobs(order).mapped("event"), ["confirm", "pickup"])
        self.assertEqual(self.jobs(draft).mapped("event"), ["void"])
        self.assertFalse(order.qimen_config_error)
        self.dispatch()
        self.assertEqual(order.qimen_sync_state, "synced")

    def test_missing_shop_customerid_is_caught_up_when_set(self):
        self.company.qimen_customerid = False
        self.config.qimen_customerid = False
        order = self.paid_order()
        self.assertIn("customer ID", order.qimen_config_error)
        with self.assertRaisesRegex(UserError, "customer ID"):
            order.action_qimen_sync_now()
        self.config.qimen_customerid = "LATE_SHOP"
        self.assertEqual(
            [job.payload["customerid"] for job in self.jobs(order)], ["LATE_SHOP", "LATE_SHOP"]
        )

    def test_database_errors_are_raised_for_odoo_to_retry(self):
        with (
            patch.object(
                type(self.Job),
                "_enqueue",
                side_effect=psycopg2.errors.SerializationFailure("conflict"),
            ),
            self.assertRaises(psycopg2.errors.SerializationFailure),
        ):
            self.paid_order()

    def test_one_failing_order_does_not_cost_the_session_its_completions(self):
        first, second = self.paid_order(), self.paid_order()
        session = self.config.current_session_id
        original = payload.build

        def build(order, event, changes=None):
            if order == first and event == "complete":
                raise ValueError("broken order")
            return original(order, event, changes)

        with (
            patch.object(payload, "build", build),
            self.assertLogs("odoo.addons.pos_qimen_sync.models.pos_order_events", logging.ERROR),
        ):
            session.post_closing_cash_details(sum(session.order_ids.payment_ids.mapped("amount")))
            session.close_session_from_ui()
        self.assertNotIn("complete", self.jobs(first).mapped("event"))
        self.assertIn("complete", self.jobs(second).mapped("event"))

    def test_cancelling_a_refund_does_not_void_the_refunded_order(self):
        order = self.paid_order()
        refund = order._refund()
        self.assertFalse(refund.qimen_bill_code)
        refund.action_pos_order_cancel()
        self.assertEqual(refund.state, "cancel")
        self.assertNotIn("void", self.jobs(order).mapped("event"))
        self.assertFalse(self.Job.search([("order_id", "=", refund.id)]))

    def test_no_pickup_after_a_void(self):
        later = self.draft_order(customer=self.customer)
        later.shipping_date = fields.Date.today()
        self.make_payment(later, self.cash_pm1, later.amount_total)
        later.write({"qimen_erp_status": "3"})  # the ERP voided it meanwhile
        picking = later.picking_ids
        picking.move_ids.quantity = 1
        picking.move_ids.picked = True
        picking.button_validate()
        self.assertNotIn("pickup", self.jobs(later).mapped("event"))

    def test_retry_refreshes_the_routing_parameter(self):
        self.config.qimen_customerid = "OLD_TENANT"
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        self.sandbox.add_fault("isv", count=1)
        self.dispatch()
        self.assertEqual(confirm.state, "dead")
        self.config.qimen_customerid = "NEW_TENANT"
        confirm.action_retry()
        self.dispatch()
        self.assertEqual(confirm.state, "done")
        self.assertEqual(self.sandbox.calls("accepted")[0].params["customerid"], "NEW_TENANT")

    def test_customerid_longer_than_50_is_refused_not_truncated(self):
        with self.assertRaisesRegex(ValidationError, "longer than 50"):
            self.config.qimen_customerid = "X" * 51
        with self.assertRaisesRegex(ValidationError, "longer than 50"):
            self.company.qimen_customerid = "店" * 51
        self.config.qimen_customerid = "店" * 50
        self.assertEqual(self.config._qimen_customerid(), "店" * 50)

    def test_invalid_parameters_are_dead_with_a_clear_error(self):
        order = self.paid_order()
        confirm = self.jobs(order)[0]
        confirm.payload = dict(confirm.payload, zf_type="9")
        self.dispatch()
        self.assertEqual(confirm.state, "dead")
        self.assertIn("zf_type: must be one of 0, 1", confirm.last_error)
        self.assertFalse(self.sandbox.calls(), "nothing invalid is sent")

    def test_missing_configuration_at_send_time_is_reported(self):
        """Settings that cannot send are the company's problem: sending pauses, the update
        waits with its attempt given back, and saving the settings resumes it."""
        order = self.paid_order()
        self.company.qimen_app_secret = False
        self.dispatch()
        confirm = self.jobs(order)[0]
        self.assertEqual((confirm.state, confirm.attempts), ("failed", 0))
        self.assertIn("app secret", confirm.last_error)
        health = self.env["qimen.sync.health"].sudo().search([("company_id", "=", self.company.id)])
        self.assertEqual((health.state, health.reason), ("paused", "configuration"))
        self.company.qimen_app_secret = APP_SECRET
        self.assertEqual(health.state, "running")
        self.dispatch()
        self.assertEqual(confirm.state, "done")
