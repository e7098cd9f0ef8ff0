from odoo import api, models


class PosSession(models.Model):
    _inherit = "pos.session"

    @api.model
    def _load_pos_data_models(self, config_id):
        # the void reasons load nothing when the company does not sync (their domain)
        return [*super()._load_pos_data_models(config_id), "qimen.void.reason"]

    def _validate_session(
        self, balancing_account=False, amount_to_balance=0, bank_payment_method_diffs=None
    ):
        res = super()._validate_session(
            balancing_account, amount_to_balance, bank_payment_method_diffs
        )
        orders = self.filtered(lambda s: s.state == "closed").order_ids
        orders._qimen_safely(orders._qimen_on_session_closed)  # one write, one insert
        return res
