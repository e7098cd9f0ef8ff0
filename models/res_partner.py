from odoo import models

from .res_company import clear_callback_companies


class ResPartner(models.Model):
    _inherit = "res.partner"

    def write(self, vals):
        """The callback caches the companies that receive calls, with their names (a
        company's is its partner's) and the language of their notes (their POS managers'
        or their own): a company's partner's name or language, or a user's partner's
        language, clears that cache, as Odoo clears it when a user's language is written
        on the user. A customer's (the till edits them) or a user's name clears nothing."""
        partners = self.sudo()
        if ("name" in vals and partners.ref_company_ids) or (
            "lang" in vals and (partners.ref_company_ids or partners.user_ids)
        ):
            clear_callback_companies(self.env)
        return super().write(vals)
