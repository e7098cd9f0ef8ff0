from odoo import models

from .res_company import clear_callback_companies


class ResPartner(models.Model):
    _inherit = "res.partner"

    def write(self, vals):
        """The callback caches the companies that receive calls, with their names (a
        company's is its partner's) and the language of their notes (their POS managers'
        or their own): written on a user's or a company's partner, these clear that cache,
        as Odoo clears it when they are written on a user. A customer's (the till edits
        them) clears nothing."""
        if {"lang", "name"} & vals.keys() and self.sudo().filtered(
            lambda p: p.user_ids or p.ref_company_ids
        ):
            clear_callback_companies(self.env)
        return super().write(vals)
