from odoo import api, fields, models

from .res_company import check_customerid


class PosConfig(models.Model):
    _inherit = "pos.config"

    qimen_customerid = fields.Char(
        "Qimen Customer ID",
        help="Routing parameter (customerid) of this shop's ERP tenant; empty: the company's.",
    )
    qimen_sync_enabled = fields.Boolean(
        related="company_id.qimen_enabled", string="Qimen ERP Sync Enabled"
    )
    qimen_refund_policy = fields.Selection(related="company_id.qimen_refund_policy")
    qimen_return_reason_id = fields.Many2one(
        "qimen.void.reason",
        string="Default Return Reason",
        check_company=True,
        help="Sent to the ERP with the void of a refunded order when the cashier gives "
        'no reason; empty: "Returned: <refund>".',
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
