"""The cashier's side in a real browser: POS tours (static/tests/tours/qimen_pos_tour.js)
in headless Chromium, with the dispatcher run between them and the calls checked at
the sandbox gateway."""

import json
from uuid import uuid4

from odoo import fields
from odoo.tests import tagged

from odoo.addons.point_of_sale.tests import test_frontend

from .common import SandboxedPos


@tagged("post_install", "-at_install")
class TestPosFrontend(SandboxedPos, test_frontend.TestPointOfSaleHttpCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._sync_with_sandbox(cls.main_pos_config)
        product = cls.env["product.product"]
        cls.tea = product.create(
            {"name": "Qimen Tea", "available_in_pos": True, "list_price": 13.57, "taxes_id": False}
        )
        cls.cake = product.create(
            {"name": "Qimen Cake", "available_in_pos": True, "list_price": 24.68, "taxes_id": False}
        )

    def setUp(self):
        super().setUp()
        self.sandbox.clear()
        self.config.with_user(self.pos_user).open_ui()
        self.pos_session = self.config.current_session_id
        self.pos_session.set_opening_control(0, None)

    # helpers ---------------------------------------------------------------------------
    def saved_draft(self, product, reference):
        """A draft the server knows, as a till saves it (named "/" until paid)."""
        price = product.lst_price
        data = {
            "amount_paid": 0,
            "amount_return": 0,
            "amount_tax": 0,
            "amount_total": price,
            "date_order": fields.Datetime.to_string(fields.Datetime.now()),
            "fiscal_position_id": False,
            "pricelist_id": self.config.pricelist_id.id,
            "name": reference,
            "last_order_preparation_change": json.dumps(
                {"lines": {}, "generalNote": "", "sittingMode": "dine in"}
            ),
            "lines": [
                (
                    0,
                    0,
                    {
                        "product_id": product.id,
                        "qty": 1,
                        "price_unit": price,
                        "price_subtotal": price,
                        "price_subtotal_incl": price,
                        "discount": 0,
                        "tax_ids": [],
                        "pack_lot_ids": [],
                    },
                )
            ],
            "partner_id": False,
            "session_id": self.pos_session.id,
            "sequence_number": 1,
            "payment_ids": [],
            "uuid": str(uuid4()),
            "user_id": self.pos_user.id,
            "to_invoice": False,
            "state": "draft",
        }
        result = self.env["pos.order"].sync_from_ui([data])
        order = self.env["pos.order"].browse(result["pos.order"][0]["id"])
        self.assertEqual((order.state, order.name), ("draft", "/"))
        return order

    def voids_sent(self):
        return {
            call.params["orderBillCode"]: call.params
            for call in self.sandbox.calls("accepted")
            if call.params["status"] == "3"
        }

    def paid_order_of(self, product):
        return self.env["pos.order"].search(
            [("session_id", "=", self.pos_session.id), ("lines.product_id", "=", product.id)],
            order="id",
            limit=1,
        )

    # tours -----------------------------------------------------------------------------
    def test_sell_and_pay_then_the_badge_shows_the_sync_state(self):
        self.start_pos_tour("QimenSellAndPayTour", login="pos_user")
        tea, cake = self.paid_order_of(self.tea), self.paid_order_of(self.cake)
        self.assertEqual((tea.state, cake.state), ("paid", "paid"))
        self.assertEqual((tea.qimen_sync_state, cake.qimen_sync_state), ("pending", "pending"))
        self.sandbox.add_fault("failure", bill_codes=[cake.qimen_bill_code])
        self.dispatch_all()
        self.assertEqual((tea.qimen_sync_state, cake.qimen_sync_state), ("synced", "failed"))
        confirm = self.sandbox.calls("accepted")[0].params
        self.assertEqual((confirm["orderBillCode"], confirm["status"]), (tea.qimen_bill_code, "1"))
        self.assertEqual(f"Order {tea.qimen_bill_code}", tea.pos_reference, "the number alone")
        self.start_pos_tour("QimenSyncBadgeTour", login="pos_user")

    def test_void_a_saved_draft_with_a_reason(self):
        trashed = self.saved_draft(self.cake, "Order 09901-001-0001")
        cancelled = self.saved_draft(self.cake, "Order 09901-001-0002")
        self.start_pos_tour("QimenVoidSavedDraftTour", login="pos_user")
        self.assertEqual((trashed.state, cancelled.state), ("cancel", "cancel"))
        unsaved = self.env["pos.order"].search([("lines.product_id", "=", self.tea.id)])
        self.assertFalse(unsaved, "the order the server never saw never reached it")
        self.dispatch_all()
        voids = self.voids_sent()
        self.assertEqual(set(voids), {"09901-001-0001", "09901-001-0002"})
        first, second = voids["09901-001-0001"], voids["09901-001-0002"]
        self.assertEqual((first["zf_type"], first["zf_message"]), ("1", "缺货"))
        self.assertEqual((second["zf_type"], second["zf_message"]), ("0", "顾客改主意了"))
        self.assertEqual(json.loads(first["extendProps"])["posOrder"], "Order 09901-001-0001")
        self.assertEqual(first["cancle"], "1")
        self.assertEqual(first["canceler"], self.pos_user.name)

    def test_a_draft_saved_for_later_is_voided_with_a_reason_and_not_listed_as_paid(self):
        """Trusted POS (Share Open Orders), as the demo sets it: the till saves drafts on
        the server, and deleting one asks for the reason the ERP receives."""
        self.config.trusted_config_ids = self.env["pos.config"].create(
            {"name": "Qimen Trusted Shop", "module_pos_restaurant": False}
        )
        self.start_pos_tour("QimenSaveForLaterThenVoidTour", login="pos_user")
        voided = self.env["pos.order"].search(
            [("session_id", "=", self.pos_session.id), ("lines.product_id", "=", self.cake.id)]
        )
        self.assertEqual(voided.state, "cancel")
        self.assertEqual((voided.qimen_void_type, voided.qimen_void_reason), ("1", "缺货"))
        self.dispatch_all()
        void = self.voids_sent()[voided.qimen_bill_code]
        self.assertEqual((void["zf_type"], void["zf_message"]), ("1", "缺货"))

    def test_void_reason_survives_offline_mode(self):
        draft = self.saved_draft(self.cake, "Order 09901-001-0001")
        self.start_pos_tour("QimenOfflineVoidTour", login="pos_user")
        self.assertEqual(draft.state, "cancel", "cancelled once the till was back online")
        self.dispatch_all()
        void = self.voids_sent()["09901-001-0001"]
        self.assertEqual((void["zf_type"], void["zf_message"]), ("1", "收银错误"))

    def test_refund_with_a_typed_reason(self):
        returned = self.env.ref("pos_qimen_sync.qimen_void_reason_customer_return")
        self.config.qimen_return_reason_id = returned
        self.start_pos_tour("QimenRefundWithReasonTour", login="pos_user")
        original = self.paid_order_of(self.tea)
        refund = self.env["pos.order"].search(
            [("lines.refunded_orderline_id.order_id", "=", original.id)]
        )
        self.assertEqual(refund.state, "paid")
        self.assertEqual(
            (refund.qimen_return_type, refund.qimen_return_reason), ("0", "尺码不合适")
        )
        self.dispatch_all()
        void = self.voids_sent()[original.qimen_bill_code]
        self.assertEqual((void["zf_type"], void["zf_message"]), ("0", "尺码不合适"))
        self.assertEqual(original.qimen_void_reason, "尺码不合适")

    def test_a_refund_that_voids_nothing_asks_no_reason(self):
        self.assertEqual(self.company.qimen_refund_policy, "full")
        self.start_pos_tour("QimenPartialRefundTour", login="pos_user")
        original = self.paid_order_of(self.tea)
        refund = self.env["pos.order"].search(
            [("lines.refunded_orderline_id.order_id", "=", original.id)]
        )
        self.assertEqual((refund.state, refund.qimen_return_reason), ("paid", False))
        self.dispatch_all()
        self.assertNotIn(original.qimen_bill_code, self.voids_sent())
        self.assertFalse(original.qimen_cancelled)

    def test_nothing_of_the_sync_when_the_company_does_not_sync(self):
        draft = self.saved_draft(self.cake, "Order 09901-001-0001")
        self.company.qimen_enabled = False
        self.start_pos_tour("QimenSyncOffTour", login="pos_user")
        self.assertEqual(draft.state, "cancel")
        self.assertFalse(self.Job.search([("order_id", "=", draft.id)]))
