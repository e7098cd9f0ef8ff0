import json
import re

from odoo import Command
from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, new_test_user, tagged

from ..const import POS_ORDER_FIELDS
from .common import APP_SECRET, QimenPosCase


@tagged("post_install", "-at_install")
class TestVoidReasons(QimenPosCase):
    """Void reasons as data, the reasons the till sends, and what the till loads."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Reason = cls.env["qimen.void.reason"]
        cls.out_of_stock = cls.Reason.create(
            {"name": "缺货", "void_type": "1", "company_id": cls.company.id}
        )
        cls.returned = cls.Reason.create(
            {"name": "顾客退货", "void_type": "0", "company_id": cls.company.id}
        )

    def sent_void(self, order):
        """The parameters of the void of ``order`` as the sandbox gateway received them."""
        self.dispatch()
        self.dispatch()
        self.dispatch()
        calls = [
            call
            for call in self.sandbox.calls("accepted")
            if call.params["orderBillCode"] == order.qimen_bill_code
            and call.params["status"] == "3"
        ]
        self.assertEqual(len(calls), 1, "one void reached the ERP")
        return calls[0].params

    # -- the till loads only what it needs --------------------------------------------
    def load_pos_data(self):
        if not self.config.current_session_id:
            self.open_new_session()
        return self.config.current_session_id.load_data([])

    def test_till_loads_the_sync_state_and_reasons_only(self):
        fields_ = self.env["pos.order"]._load_pos_data_fields(self.config.id)
        self.assertEqual([f for f in fields_ if f.startswith("qimen_")], POS_ORDER_FIELDS)
        self.assertNotIn("activity_ids", fields_, "the addon's to-dos stay in the back office")
        for core_field in ("name", "pos_reference", "lines", "state", "uuid", "session_id"):
            self.assertIn(core_field, fields_)
        data = self.load_pos_data()
        reasons = data["qimen.void.reason"]["data"]
        self.assertIn(
            {"id": self.out_of_stock.id, "name": "缺货", "void_type": "1", "sequence": 10},
            reasons,
        )
        self.assertEqual(set(reasons[0]), {"id", "name", "void_type", "sequence"})
        other = self.env["res.company"].create({"name": "Other shop company"})
        elsewhere = self.Reason.create({"name": "Other", "company_id": other.id})
        self.assertNotIn(elsewhere.id, [r["id"] for r in reasons])
        self.assertTrue(data["pos.config"]["data"][0]["qimen_sync_enabled"])
        dumped = json.dumps(data, default=str)
        self.assertNotIn(APP_SECRET, dumped)
        self.assertNotIn("qimen_app_secret", dumped)
        self.assertNotIn("qimen_last_error", dumped)
        self.assertNotIn("qimen_job_ids", dumped)

    def test_nothing_of_the_sync_at_a_till_whose_company_does_not_sync(self):
        self.company.qimen_enabled = False
        fields_ = self.env["pos.order"]._load_pos_data_fields(self.config.id)
        self.assertFalse([f for f in fields_ if f.startswith("qimen_")])
        data = self.load_pos_data()
        self.assertEqual(data["qimen.void.reason"]["data"], [])
        self.assertFalse(data["pos.config"]["data"][0]["qimen_sync_enabled"])

    def test_synced_order_read_back_by_the_till_has_its_state(self):
        order = self.paid_order()
        read = order.read(order._load_pos_data_fields(self.config.id), load=False)[0]
        self.assertEqual(read["qimen_sync_state"], "pending")
        self.dispatch()
        self.dispatch()
        order.invalidate_recordset()
        self.assertEqual(order.read(["qimen_sync_state"])[0]["qimen_sync_state"], "synced")

    # -- a void at the till -------------------------------------------------------------
    def test_void_reason_travels_in_the_cancel_call(self):
        order = self.draft_order()
        self.assertEqual(order.name, "/", "a draft saved by the POS")
        voids = {str(order.id): {"type": "1", "message": " 缺货 "}}
        result = order.with_context(qimen_voids=voids).action_pos_order_cancel()
        self.assertEqual(order.state, "cancel")
        self.assertEqual(result["pos.order"][0]["qimen_sync_state"], "pending")
        params = self.sent_void(order)
        self.assertEqual(params["zf_type"], "1")
        self.assertEqual(params["zf_message"], "缺货")
        self.assertEqual(params["orderBillCode"], order.qimen_bill_code)
        self.assertEqual(json.loads(params["extendProps"])["posOrder"], order.pos_reference)

    def test_each_order_gets_its_own_reason(self):
        first, second, third = self.draft_order(), self.draft_order(), self.draft_order()
        voids = {
            str(first.id): {"type": "0", "message": "顾客退货"},
            str(second.id): {"type": "1", "message": "收银错误"},
        }
        (first | second | third).with_context(qimen_voids=voids).action_pos_order_cancel()
        self.assertEqual(
            [(o.qimen_void_type, o.qimen_void_reason) for o in (first, second, third)],
            [("0", "顾客退货"), ("1", "收银错误"), ("1", False)],
        )

    def test_invalid_void_reason_is_refused_and_nothing_is_cancelled(self):
        order = self.draft_order()
        for bad in ({"type": "7", "message": "x"}, {"type": "1", "message": 42}, "缺货"):
            with self.assertRaisesRegex(UserError, "Invalid void reason"):
                order.with_context(qimen_voids={str(order.id): bad}).action_pos_order_cancel()
            self.assertEqual(order.state, "draft")
        self.assertFalse(self.jobs(order))

    def test_reason_of_a_paid_order_is_ignored(self):
        order = self.paid_order()
        voids = {str(order.id): {"type": "0", "message": "x"}}
        order.with_context(qimen_voids=voids).action_pos_order_cancel()
        self.assertEqual(order.state, "paid")
        self.assertFalse(order.qimen_void_reason)

    # -- a refund at the till ----------------------------------------------------------
    def refund_from_till(self, order, **extra):
        data = self.create_ui_order_data(
            [
                {
                    "product": line.product_id,
                    "quantity": -line.qty,
                    "refunded_orderline_id": line.id,
                }
                for line in order.lines
            ]
        )
        data.update(extra)
        return self._sync_order(data)

    def test_refund_reason_from_the_till_reaches_the_refunded_orders_void(self):
        order = self.paid_order()
        refund = self.refund_from_till(
            order, qimen_return_type="0", qimen_return_reason="尺码不合适"
        )
        self.assertEqual(refund.refunded_order_id, order)
        self.assertEqual(refund.qimen_return_reason, "尺码不合适")
        params = self.sent_void(order)
        self.assertEqual((params["zf_type"], params["zf_message"]), ("0", "尺码不合适"))

    def test_refund_reason_of_type_other(self):
        order = self.paid_order()
        self.refund_from_till(order, qimen_return_type="1", qimen_return_reason="收银错误")
        params = self.sent_void(order)
        self.assertEqual((params["zf_type"], params["zf_message"]), ("1", "收银错误"))

    def test_refund_without_reason_uses_the_shop_default(self):
        self.config.qimen_return_reason_id = self.returned
        order = self.paid_order()
        self.refund_from_till(order)
        params = self.sent_void(order)
        self.assertEqual((params["zf_type"], params["zf_message"]), ("0", "顾客退货"))

    def test_refund_without_reason_nor_default(self):
        order = self.paid_order()
        refund = self.refund_from_till(order)
        params = self.sent_void(order)
        self.assertEqual(
            (params["zf_type"], params["zf_message"]), ("0", f"Returned: {refund.name}")
        )

    # -- orders named "/" ----------------------------------------------------------------
    def test_saved_draft_is_shown_by_its_pos_reference(self):
        order = self.draft_order()
        self.assertEqual(order.name, "/")
        self.assertEqual(order.display_name, order.pos_reference)
        order.action_pos_order_cancel()
        self.assertEqual(self.jobs(order).order_id.display_name, order.pos_reference)
        paid = self.paid_order()
        self.assertEqual(paid.display_name, paid.name, "a paid order keeps its name")

    # -- back office ---------------------------------------------------------------------
    def test_wizard_preset_fills_type_and_message_and_text_stays_free(self):
        order = self.draft_order()
        action = order.action_qimen_void()
        wizard = Form(self.env[action["res_model"]].with_context(**action["context"]))
        self.assertEqual(wizard.order_ids[0].display_name, order.pos_reference)
        wizard.reason_id = self.returned
        self.assertEqual((wizard.void_type, wizard.reason), ("0", "顾客退货"))
        wizard.reason = "顾客退货 (size)"
        wizard.save().action_void()
        params = self.sent_void(order)
        self.assertEqual((params["zf_type"], params["zf_message"]), ("0", "顾客退货 (size)"))

    def test_server_action_voids_several_drafts_at_once(self):
        drafts = self.draft_order() | self.draft_order()
        server_action = self.env.ref("pos_qimen_sync.pos_order_action_void_with_reason")
        self.assertEqual(server_action.binding_model_id.model, "pos.order")
        action = server_action.with_context(active_model="pos.order", active_ids=drafts.ids).run()
        self.assertEqual(action["res_model"], "qimen.void.wizard")
        wizard = Form(self.env[action["res_model"]].with_context(**action["context"]))
        self.assertEqual(wizard.order_ids.ids, drafts.ids)
        wizard.reason_id = self.out_of_stock
        wizard.save().action_void()
        self.assertEqual(set(drafts.mapped("state")), {"cancel"})
        self.assertEqual(set(drafts.mapped("qimen_void_reason")), {"缺货"})
        paid = self.paid_order()
        with self.assertRaisesRegex(UserError, re.escape(paid.name)):
            server_action.with_context(
                active_model="pos.order", active_ids=(drafts | paid).ids
            ).run()

    def test_reasons_per_company_read_by_users_managed_by_managers(self):
        other = self.env["res.company"].create({"name": "Other reasons company"})
        theirs = self.Reason.create({"name": "Theirs", "company_id": other.id})
        shared = self.env.ref("pos_qimen_sync.qimen_void_reason_changed_mind")
        user = new_test_user(
            self.env,
            "void_reason_user",
            groups="point_of_sale.group_pos_user",
            company_id=self.company.id,
            company_ids=[Command.set(self.company.ids)],
        )
        manager = new_test_user(
            self.env,
            "void_reason_manager",
            groups="point_of_sale.group_pos_manager",
            company_id=self.company.id,
            company_ids=[Command.set(self.company.ids)],
        )
        seen = self.Reason.with_user(user).search([])
        self.assertIn(self.out_of_stock, seen)
        self.assertIn(shared, seen, "a reason without company is offered everywhere")
        self.assertNotIn(theirs, seen)
        with self.assertRaises(AccessError):
            self.Reason.with_user(user).create({"name": "mine"})
        reason = self.Reason.with_user(manager).create({"name": "店长决定"})
        self.assertEqual(reason.company_id, self.company)
        reason.with_user(manager).active = False
        self.assertNotIn(reason, self.Reason.with_user(user).search([]))

    def test_default_reasons_are_installed_in_chinese(self):
        shared = self.Reason.search([("company_id", "=", False)])
        self.assertEqual(
            {(r.name, r.void_type) for r in shared},
            {
                ("不想买了", "1"),
                ("缺货", "1"),
                ("收银错误", "1"),
                ("顾客退货", "0"),
                ("商品质量问题", "0"),
            },
        )
