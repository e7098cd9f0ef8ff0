from odoo import models


class PosSession(models.Model):
    _inherit = "pos.session"

    def _validate_session(
        self, balancing_account=False, amount_to_balance=0, bank_payment_method_diffs=None
    ):
        res = super()._validate_session(
            balancing_account, amount_to_balance, bank_payment_method_diffs
        )
        for order in self.filtered(lambda s: s.state == "closed").order_ids:
            order._qimen_safely(order._qimen_on_session_closed)  # one failure loses one
        return res
