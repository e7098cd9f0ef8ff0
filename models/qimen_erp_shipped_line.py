"""What the ERP says it shipped of an order (its call's ``mx_list``), line by line,
matched to the order's products so that a difference stands out."""

from odoo import api, fields, models
from odoo.tools import float_compare, float_round

DIFFERENCE_SELECTION = [
    ("ok", "As ordered"),
    ("quantity", "Quantity differs"),
    ("unknown_sku", "Unknown SKU"),
    ("not_shipped", "Not shipped"),
]


class QimenErpShippedLine(models.Model):
    """One SKU of the ERP's latest ``mx_list``, or one product of the order that it
    left out. Written by the ERP's calls only, replaced whole by each one that carries
    an ``mx_list``."""

    _name = "qimen.erp.shipped.line"
    _description = "Line Shipped by the ERP"
    _order = "id"

    order_id = fields.Many2one(
        "pos.order", required=True, index=True, ondelete="cascade", readonly=True
    )
    company_id = fields.Many2one(related="order_id.company_id", store=True, index=True)
    sku = fields.Char("SKU", readonly=True, help="As the ERP sent it (mx_list sku).")
    product_id = fields.Many2one(
        "product.product",
        readonly=True,
        help="The order's product whose internal reference, else barcode, is the SKU.",
    )
    quantity_shipped = fields.Float(digits="Product Unit of Measure", readonly=True)
    quantity_ordered = fields.Float(
        digits="Product Unit of Measure",
        readonly=True,
        help="Of the matched product, over the order's lines (refund lines excluded).",
    )
    difference = fields.Selection(DIFFERENCE_SELECTION, required=True, readonly=True)

    @api.model
    def _qimen_rounded(self, shipped):
        """``{sku: quantity}`` rounded as the lines store it, so that a call is compared
        with the lines it wrote."""
        digits = self._fields["quantity_shipped"].get_digits(self.env)[1]
        return {sku: float_round(qty, precision_digits=digits) for sku, qty in shipped.items()}

    def _qimen_quantities(self):
        """``{sku: quantity}`` the lines were written from."""
        return {line.sku: line.quantity_shipped for line in self if line.sku}

    @api.model
    def _qimen_ordered(self, order):
        """``{product: quantity}`` over the order's lines, refund lines excluded (an
        exchange returns goods of another order in this one): what the ERP should ship."""
        groups = self.env["pos.order.line"]._read_group(
            [("order_id", "=", order.id), ("refunded_orderline_id", "=", False)],
            ["product_id"],
            ["qty:sum"],
        )
        return {product: quantity for product, quantity in groups if product}

    @api.model
    def _qimen_replace(self, order, shipped):
        """Replace the order's lines with ``shipped`` (``{sku: quantity}``, rounded).

        A SKU is matched to the order's product with that internal reference, else that
        barcode; quantities are compared per product (several SKUs may match one). Goods
        of the order that no SKU matched are listed as not shipped (services, such as a
        tip or a discount, are not goods)."""
        ordered = self._qimen_ordered(order)
        by_code, by_barcode = {}, {}
        for product in ordered:
            by_code.setdefault(product.default_code or None, product)
            by_barcode.setdefault(product.barcode or None, product)
        by_code.pop(None, None)
        by_barcode.pop(None, None)
        matched = {sku: by_code.get(sku) or by_barcode.get(sku) for sku in shipped}
        per_product = {}
        for sku, product in matched.items():
            if product:
                per_product[product] = per_product.get(product, 0.0) + shipped[sku]
        digits = self._fields["quantity_shipped"].get_digits(self.env)[1]
        values = []
        for sku, product in matched.items():
            if not product:
                difference = "unknown_sku"
            elif float_compare(per_product[product], ordered[product], digits):
                difference = "quantity"
            else:
                difference = "ok"
            values.append(
                {
                    "order_id": order.id,
                    "sku": sku,
                    "product_id": product.id if product else False,
                    "quantity_shipped": shipped[sku],
                    "quantity_ordered": ordered.get(product, 0.0) if product else 0.0,
                    "difference": difference,
                }
            )
        values.extend(
            {
                "order_id": order.id,
                "product_id": product.id,
                "quantity_shipped": 0.0,
                "quantity_ordered": quantity,
                "difference": "not_shipped",
            }
            for product, quantity in ordered.items()
            if product not in per_product
            and product.type == "consu"
            and float_compare(quantity, 0.0, digits) > 0
        )
        order.qimen_erp_shipped_line_ids.unlink()
        return self.create(values)

    def _qimen_summary(self):
        """What the chatter says of the lines: how many the ERP shipped, how many differ."""
        env = self.env
        count = len(self.filtered("sku"))
        shipped = env._("1 line shipped") if count == 1 else env._("%s lines shipped", count)
        differ = len(self.filtered(lambda line: line.difference != "ok"))
        if not differ:
            return env._("%s, as ordered", shipped)
        if differ == 1:
            return env._("%s, 1 differs", shipped)
        return env._("%(shipped)s, %(count)s differ", shipped=shipped, count=differ)
