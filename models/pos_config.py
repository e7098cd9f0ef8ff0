from odoo import api, fields, models

from .res_company import check_customerid


class PosConfig(models.Model):
    _inherit = "pos.config"

    qimen_customerid = fields.Char(
        "Qimen Customer ID",
        help="Routing parameter (customerid) of this shop's ERP tenant; empty: the company's.",
    )

    @api.constrains("qimen_customerid")
    def _check_qimen_customerid(self):
        for config in self:
            check_customerid(self.env, config.qimen_customerid)

    def write(self, vals):
        res = super().write(vals)
        if vals.get("qimen_customerid"):
            self.company_id._qimen_requeue_missed()
        return res

    def _qimen_customerid(self):
        self.ensure_one()
        return self.qimen_customerid or self.company_id.qimen_customerid or ""
