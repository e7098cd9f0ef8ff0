from odoo import models


class StockPicking(models.Model):
    _inherit = "stock.picking"

    def _action_done(self):
        res = super()._action_done()
        for picking in self.filtered(
            lambda p: p.pos_order_id and p.picking_type_code == "outgoing" and p.state == "done"
        ):
            order = picking.pos_order_id
            order._qimen_safely(order._qimen_on_picked_up, picking)
        return res
