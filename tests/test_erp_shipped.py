import re

from lxml import etree

from odoo.tests import new_test_user, tagged

from .inbound_common import QimenCallbackCase

ORDER_UPDATE = re.compile(r'UPDATE "pos_order"\s')


@tagged("post_install", "-at_install")
class TestErpShipped(QimenCallbackCase):
    """What the ERP shipped (mx_list, fhck_code), its latest report, and its repeats."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.product1.default_code = "P1-REF"
        cls.product2.barcode = "6900000000029"
        cls.wrapping = cls.env["product.product"].create(
            {
                "name": "Gift wrapping",
                "type": "service",
                "available_in_pos": True,
                "list_price": 1.0,
                "taxes_id": [(5, 0, 0)],
            }
        )

    def setUp(self):
        super().setUp()
        self.order = self.paid_order([(self.product1, 2), (self.product2, 1), (self.wrapping, 1)])
        self.bill = self.order.qimen_bill_code

    # helpers ---------------------------------------------------------------------------
    def report(self, status="2", lines=None, **fields):
        """Send a signed call (a new request_id each time) about the order."""
        params = dict(fields, orderBillCode=self.bill, status=status)
        if lines is not None:
            params["mx_list"] = [{"sku": sku, "goods_number": number} for sku, number in lines]
        response, reply = self.call(params)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertTrue(reply.ok, response.text)
        self.order.invalidate_recordset()
        return reply

    def report_and_watch(self, status="2", lines=None, **fields):
        """``report`` and the SQL it ran."""
        self.env.flush_all()  # only the call's own SQL
        with self.assertLogs("odoo.sql_db", "DEBUG") as sql:
            reply = self.report(status, lines, **fields)
        return reply, "\n".join(sql.output)

    def shipped(self, order=None):
        return [
            (
                line.sku,
                line.product_id,
                line.quantity_shipped,
                line.quantity_ordered,
                line.difference,
            )
            for line in (order or self.order).qimen_erp_shipped_line_ids
        ]

    def note(self):
        return str(self.order.message_ids[0].body)

    def arch(self):
        views = self.env["pos.order"].get_views([(False, "form")])
        return etree.fromstring(views["views"]["form"]["arch"])

    # what the ERP shipped ------------------------------------------------------------------
    def test_lines_are_matched_by_internal_reference_then_barcode(self):
        self.report(lines=[("P1-REF", "2"), ("6900000000029", "1")], fhck_code="WH-SH-01")
        self.assertEqual(
            self.shipped(),
            [
                ("P1-REF", self.product1, 2.0, 2.0, "ok"),
                ("6900000000029", self.product2, 1.0, 1.0, "ok"),
            ],
            "the gift wrapping is a service: nothing to ship",
        )
        self.assertEqual(self.order.qimen_erp_warehouse, "WH-SH-01")
        self.assertIn("Lines: 2 lines shipped, as ordered", self.note())
        self.assertIn("Shipping Warehouse: WH-SH-01", self.note())
        # a SKU that is a product's internal reference and another's barcode: the reference
        self.product1.default_code = "6900000000029"
        self.report(lines=[("6900000000029", "2")])
        self.assertEqual(
            self.shipped(),
            [
                ("6900000000029", self.product1, 2.0, 2.0, "ok"),
                (False, self.product2, 0.0, 1.0, "not_shipped"),
            ],
        )

    def test_differences_are_marked(self):
        self.report(lines=[("P1-REF", "1"), ("UNKNOWN-9", "3")])
        self.assertEqual(
            self.shipped(),
            [
                ("P1-REF", self.product1, 1.0, 2.0, "quantity"),
                ("UNKNOWN-9", self.env["product.product"], 3.0, 0.0, "unknown_sku"),
                (False, self.product2, 0.0, 1.0, "not_shipped"),
            ],
        )
        self.assertIn("Lines: 2 lines shipped, 3 differ", self.note())

    def test_a_later_list_replaces_the_lines(self):
        self.report(lines=[("P1-REF", "1"), ("UNKNOWN-9", "3")])
        first = self.order.qimen_erp_shipped_line_ids
        # a SKU on two lines is one SKU shipped, their quantities summed
        self.report("4", lines=[("P1-REF", "1"), ("6900000000029", "2"), ("P1-REF", "1")])
        self.assertFalse(first.exists())
        self.assertEqual(
            self.shipped(),
            [
                ("P1-REF", self.product1, 2.0, 2.0, "ok"),
                ("6900000000029", self.product2, 2.0, 1.0, "quantity"),
            ],
        )
        self.assertIn("Lines: 2 lines shipped, 1 differs", self.note())
        lines = self.order.qimen_erp_shipped_line_ids
        self.report("3", zf_message="缺货")  # a call without lines keeps them
        self.assertEqual(self.order.qimen_erp_shipped_line_ids, lines)
        self.assertNotIn("Lines:", self.note())

    def test_refund_lines_are_not_ordered_goods(self):
        """An exchange returns goods of another order in this one: they are not to ship."""
        exchange = self.paid_order(
            [
                (self.product2, 1),
                {
                    "product": self.product1,
                    "quantity": -1,
                    "refunded_orderline_id": self.order.lines[0].id,
                },
            ]
        )
        self.bill = exchange.qimen_bill_code
        self.report(lines=[("6900000000029", "1")])
        self.assertEqual(self.shipped(exchange), [("6900000000029", self.product2, 1.0, 1.0, "ok")])

    def test_pos_users_read_the_lines_of_their_companies(self):
        self.report(lines=[("P1-REF", "2")])
        lines = self.order.qimen_erp_shipped_line_ids
        user = new_test_user(
            self.env,
            "qimen_shipped_reader",
            groups="point_of_sale.group_pos_user",
            company_id=self.company.id,
            company_ids=[(6, 0, self.company.ids)],
        )
        self.assertEqual(lines.with_user(user).read(["sku"])[0]["sku"], "P1-REF")
        other = self.env["res.company"].create({"name": "Another shop company"})
        stranger = new_test_user(
            self.env,
            "qimen_shipped_stranger",
            groups="point_of_sale.group_pos_user",
            company_id=other.id,
            company_ids=[(6, 0, other.ids)],
        )
        shipped = self.env["qimen.erp.shipped.line"].with_user(stranger)
        self.assertFalse(shipped.search([("id", "in", lines.ids)]))

    def test_a_call_without_lines_does_not_query_them(self):
        """The callback's hot path: the lines cost queries only to a call that lists some."""
        _reply, sql = self.report_and_watch(shippingSn="SF-1")
        self.assertTrue(ORDER_UPDATE.search(sql), "the SQL was watched")
        self.assertNotIn("qimen_erp_shipped_line", sql)
        _reply, sql = self.report_and_watch(lines=[("P1-REF", "2")])
        self.assertIn("qimen_erp_shipped_line", sql)

    def test_the_tab_shows_the_lines_next_to_the_warehouse(self):
        page = self.arch().xpath("//page[@name='qimen_sync']")[0]
        (shipped,) = page.xpath(".//group[@name='qimen_shipped']")
        self.assertEqual(
            shipped.xpath("./field/@name"), ["qimen_erp_warehouse", "qimen_erp_shipped_line_ids"]
        )
        (listing,) = shipped.xpath(".//list")
        self.assertEqual(listing.get("decoration-warning"), "difference == 'quantity'")
        self.assertEqual(
            listing.get("decoration-danger"), "difference in ('unknown_sku', 'not_shipped')"
        )
        reported = page.xpath(".//group[@name='qimen_reported']/field/@name")
        self.assertLess(reported.index("qimen_erp_status"), reported.index("qimen_erp_last_status"))
        self.assertIn("qimen_erp_last_report_date", reported)

    # the ERP's latest report ---------------------------------------------------------------
    def test_a_status_5_is_the_latest_report_while_the_status_stays(self):
        self.report("2", shippingSn="SF-1")
        reported_on = self.order.qimen_erp_status_date
        reply = self.report("5", extendProps="门店自提", lines=[("P1-REF", "2")])
        self.assertEqual(reply.message, "Recorded; the order is unchanged")
        self.assertEqual(
            (self.order.qimen_erp_status, self.order.qimen_erp_status_date),
            ("2", reported_on),
            "the status that drives the order",
        )
        self.assertEqual(self.order.qimen_erp_last_status, "5")
        self.assertTrue(self.order.qimen_erp_last_report_date)
        self.assertEqual(self.shipped()[0][:2], ("P1-REF", self.product1), "lines of a 5 too")
        self.assertNotIn("extendProps", self.order.qimen_erp_reported)
        # an order the ERP only said "other" of has a latest report and no status
        self.order = self.paid_order()
        self.bill = self.order.qimen_bill_code
        self.report("5")
        self.assertEqual(
            (self.order.qimen_erp_status, self.order.qimen_erp_last_status), (False, "5")
        )

    # repeats -------------------------------------------------------------------------------
    def test_a_repeat_under_a_new_request_id_adds_no_note_but_is_logged(self):
        said = {"shippingSn": "SF-1", "fhck_code": "WH-SH-01"}
        lines = [("P1-REF", "2"), ("6900000000029", "1")]
        self.report(lines=lines, **said)
        notes, shipped = len(self.order.message_ids), self.order.qimen_erp_shipped_line_ids
        for name, repeat in (
            ("the same call", dict(said, lines=lines)),
            ("the lines in another order", dict(said, lines=lines[::-1])),
            ("part of what the ERP said", {"shippingSn": "SF-1"}),
        ):
            with self.subTest(name):
                reply, sql = self.report_and_watch(**repeat)
                self.assertEqual(reply.message, "Nothing new: the ERP reported this already")
                self.assertFalse(ORDER_UPDATE.search(sql), "the order's row is not written")
                self.assertEqual(len(self.order.message_ids), notes)
                self.assertEqual(self.order.qimen_erp_shipped_line_ids, shipped)
                log = self.Log.search([], limit=1)
                self.assertEqual(
                    (log.result, log.order_id, log.code), ("duplicate", self.order, "1")
                )
        request_ids = self.Log.search([("order_id", "=", self.order.id)]).mapped("request_id")
        self.assertEqual(len(set(request_ids)), 4, "each call logged under its own request_id")
        # a recorded call repeated: one note
        self.report("5", extendProps="门店自提")
        self.assertEqual(
            self.report("5", extendProps="门店自提").message,
            "Nothing new: the ERP reported this already",
        )
        self.assertEqual(len(self.order.message_ids), notes + 1)

    def test_a_call_that_changes_something_adds_its_note(self):
        said = {"shippingSn": "SF-1", "fhck_code": "WH-SH-01"}
        self.report(lines=[("P1-REF", "2")], **said)
        for name, status, change, result in (
            ("another tracking number", "2", {"shippingSn": "SF-2"}, "applied"),
            ("other lines", "2", {"lines": [("P1-REF", "1")]}, "applied"),
            ("another status", "4", {}, "applied"),
            ("the earlier status again", "2", {}, "recorded"),  # not after a finish
        ):
            with self.subTest(name):
                said.update(change)
                notes = len(self.order.message_ids)
                _reply, sql = self.report_and_watch(status, **said)
                self.assertTrue(ORDER_UPDATE.search(sql))
                self.assertEqual(len(self.order.message_ids), notes + 1)
                self.assertEqual(self.order.qimen_erp_last_status, status)
                self.assertEqual(self.Log.search([], limit=1).result, result)
        self.assertEqual(self.order.qimen_erp_status, "4")
        self.assertEqual(self.order.qimen_erp_reported["shippingSn"], "SF-2")
        self.assertEqual(self.shipped()[0][2:], (1.0, 2.0, "quantity"))
