from odoo import api, models

from .res_company import clear_callback_companies


class ResUsers(models.Model):
    _inherit = "res.users"

    @api.model_create_multi
    def create(self, vals_list):
        """A new internal user may be the POS manager whose language the ERP's notes are
        written in, which the callback caches with its companies: Odoo clears the
        registry's cache when users' groups, companies or language are written, not when
        a user is created."""
        users = super().create(vals_list)
        if users.filtered(lambda user: not user.share):
            clear_callback_companies(self.env)
        return users
