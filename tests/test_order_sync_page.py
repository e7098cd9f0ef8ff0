from lxml import etree

from odoo.tests import tagged
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
        self.assertEqual(reported, {"qimen_erp_status"})
        self.assertFalse(store & (sent | reported), "no fact shown under two sources")

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
