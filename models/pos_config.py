from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..const import BILL_CODE_PREFIX
from .res_company import check_customerid, clear_callback_companies

# What a bill code looks like after the prefix, shown in the settings: the till's order
# number (session, login, sequence).
SAMPLE_ORDER_NUMBER = "00012-001-0003"


# what the callback's cache of the companies that receive calls reads of their shops
CALLBACK_SHOP_FIELDS = frozenset({"active", "company_id", "qimen_customerid"})


class PosConfig(models.Model):
    _inherit = "pos.config"

    qimen_customerid = fields.Char(
        "Qimen Customer ID",
        help="Routing parameter (customerid) of this shop's ERP tenant; empty: the company's.",
    )
    qimen_sync_enabled = fields.Boolean(
        related="company_id.qimen_enabled", string="Qimen ERP Sync Enabled"
    )
    qimen_bill_code_prefix = fields.Char(
        "ERP Bill Code Prefix",
        help="Put before the till's order number in the bill code the ERP sees "
        "(orderBillCode), e.g. a shop code: SH01- gives SH01-00012-001-0003. Letters, "
        "digits, - and _, at most 16. Orders that already have a bill code keep it.",
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

    @api.constrains("qimen_bill_code_prefix")
    def _check_qimen_bill_code_prefix(self):
        for config in self:
            if not BILL_CODE_PREFIX.fullmatch(config.qimen_bill_code_prefix or ""):
                raise ValidationError(
                    self.env._(
                        "The ERP bill code prefix of %(shop)s may hold letters, digits, - and _ "
                        "only, at most 16 (no spaces): %(prefix)s",
                        shop=config.name,
                        prefix=config.qimen_bill_code_prefix,
                    )
                )

    @api.model_create_multi
    def create(self, vals_list):
        if any(vals.get("qimen_customerid") for vals in vals_list):
            clear_callback_companies(self.env)
        return super().create(vals_list)

    def write(self, vals):
        if CALLBACK_SHOP_FIELDS.intersection(vals):
            clear_callback_companies(self.env)
        res = super().write(vals)
        if vals.get("qimen_customerid"):
            self.company_id._qimen_requeue_missed()
        return res

    def unlink(self):
        clear_callback_companies(self.env)
        return super().unlink()

    def _qimen_unrouted_problems(self, name_shops=False):
        """What keeps these shops' orders from being routed: no customer ID of the shop
        nor of its company (``name_shops``: say which shops)."""
        unrouted = self.filtered(lambda config: not config._qimen_customerid())
        if not unrouted:
            return []
        missing = self.env._("customer ID (customerid) of the shop or company")
        if name_shops:
            missing = f"{missing} ({', '.join(unrouted.mapped('name'))})"
        return [missing]

    def _qimen_customerid(self):
        self.ensure_one()
        return self.qimen_customerid or self.company_id.qimen_customerid or ""
