from odoo import models


class ResPartner(models.Model):
    _inherit = "res.partner"

    def write(self, vals):
        """The callback caches the language of its notes (the company's POS managers', or
        the company's): written on a user's or a company's partner, it clears the
        registry's cache, as Odoo clears it when written on a user. A customer's (the
        till edits them) clears nothing."""
        if "lang" in vals and self.sudo().filtered(lambda p: p.user_ids or p.ref_company_ids):
            self.env.registry.clear_cache()
        return super().write(vals)
