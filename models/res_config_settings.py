from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..controllers.main import CALLBACK_ROUTE
from .pos_config import SAMPLE_ORDER_NUMBER
from .qimen_dispatch_runs import MAX_DISPATCH_RUNS


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    qimen_enabled = fields.Boolean(related="company_id.qimen_enabled", readonly=False)
    qimen_gateway = fields.Selection(related="company_id.qimen_gateway", readonly=False)
    qimen_custom_url = fields.Char(related="company_id.qimen_custom_url", readonly=False)
    qimen_gateway_url = fields.Char("Gateway URL", compute="_compute_qimen_gateway_url")
    qimen_app_key = fields.Char(related="company_id.qimen_app_key", readonly=False)
    qimen_app_secret = fields.Char(
        related="company_id.qimen_app_secret", readonly=False, groups="base.group_system"
    )
    qimen_target_app_key = fields.Char(related="company_id.qimen_target_app_key", readonly=False)
    qimen_customerid = fields.Char(related="company_id.qimen_customerid", readonly=False)
    qimen_sign_method = fields.Selection(related="company_id.qimen_sign_method", readonly=False)
    qimen_format = fields.Selection(related="company_id.qimen_format", readonly=False)
    qimen_connect_timeout = fields.Float(related="company_id.qimen_connect_timeout", readonly=False)
    qimen_read_timeout = fields.Float(related="company_id.qimen_read_timeout", readonly=False)
    qimen_max_attempts = fields.Integer(related="company_id.qimen_max_attempts", readonly=False)
    qimen_pickup_on_paid = fields.Boolean(related="company_id.qimen_pickup_on_paid", readonly=False)
    qimen_refund_policy = fields.Selection(related="company_id.qimen_refund_policy", readonly=False)
    qimen_callback_secret = fields.Char(
        related="company_id.qimen_callback_secret", readonly=False, groups="base.group_system"
    )
    qimen_callback_max_skew = fields.Integer(
        related="company_id.qimen_callback_max_skew", readonly=False
    )
    qimen_callback_url = fields.Char("Callback URL", compute="_compute_qimen_callback_url")
    qimen_lanes = fields.Integer(
        "Parallel Senders",
        config_parameter="pos_qimen_sync.lanes",
        default=4,
        help="Updates of different orders sent at the same time (an order's updates always "
        "go one after the other). For every company of this database.",
    )
    qimen_dispatch_runs = fields.Integer(
        "Dispatch Runs at Once",
        default=1,
        help="Dispatcher runs that may send at the same time, each with its parallel "
        "senders: one per Odoo server that runs crons, for a chain that scales out (Odoo "
        "runs one cron on one server at a time). For every company of this database.",
    )
    qimen_job_retention_days = fields.Integer(
        "Keep Sent Updates (days)",
        config_parameter="pos_qimen_sync.job_retention_days",
        default=30,
        help="Updates acknowledged, superseded or cancelled are deleted after this many days.",
    )
    pos_qimen_customerid = fields.Char(
        related="pos_config_id.qimen_customerid", readonly=False, string="Shop Customer ID"
    )
    pos_qimen_customerid_label = fields.Char(compute="_compute_pos_qimen_shop")
    pos_qimen_bill_code_prefix = fields.Char(
        related="pos_config_id.qimen_bill_code_prefix", readonly=False
    )
    pos_qimen_bill_code_prefix_label = fields.Char(compute="_compute_pos_qimen_shop")
    pos_qimen_bill_code_example = fields.Char("The ERP Sees", compute="_compute_pos_qimen_shop")
    pos_qimen_return_reason_id = fields.Many2one(
        related="pos_config_id.qimen_return_reason_id", readonly=False
    )

    @api.constrains("qimen_lanes", "qimen_dispatch_runs", "qimen_job_retention_days")
    def _check_qimen_sending(self):
        for settings in self:
            if not 1 <= settings.qimen_lanes <= 32:
                raise ValidationError(self.env._("Parallel Senders must be between 1 and 32."))
            if not 1 <= settings.qimen_dispatch_runs <= MAX_DISPATCH_RUNS:
                raise ValidationError(
                    self.env._("Dispatch Runs at Once must be between 1 and %s.", MAX_DISPATCH_RUNS)
                )
            if settings.qimen_job_retention_days < 1:
                raise ValidationError(self.env._("Keep sent updates for at least one day."))

    @api.depends("qimen_gateway", "qimen_custom_url")
    def _compute_qimen_gateway_url(self):
        for settings in self:
            company = settings.company_id
            settings.qimen_gateway_url = company.with_context(
                qimen_gateway=settings.qimen_gateway, qimen_custom_url=settings.qimen_custom_url
            )._qimen_gateway_url()

    @api.depends("pos_config_id", "pos_qimen_bill_code_prefix")
    def _compute_pos_qimen_shop(self):
        """Labels that name the shop the page shows (chosen at its top), and the bill code
        the ERP would see with the prefix being typed."""
        for settings in self:
            config = settings.pos_config_id
            settings.pos_qimen_customerid_label = self.env._("Customer ID of %s", config.name)
            settings.pos_qimen_bill_code_prefix_label = self.env._(
                "Bill Code Prefix of %s", config.name
            )
            prefix = settings.pos_qimen_bill_code_prefix or ""
            settings.pos_qimen_bill_code_example = prefix + SAMPLE_ORDER_NUMBER

    @api.depends("company_id")
    def _compute_qimen_callback_url(self):
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for settings in self:
            settings.qimen_callback_url = base_url.rstrip("/") + CALLBACK_ROUTE

    def action_qimen_test_connection(self):
        """Save the settings, then make one signed call with them, with the customerid
        of the shop selected on the settings page (what that shop's orders send)."""
        self.ensure_one()
        self.execute()
        config = self.pos_config_id.filtered(lambda c: c.company_id == self.company_id)
        verdict, detail = self.company_id._qimen_test_connection(config)
        titles = {
            "accepted": (self.env._("Reachable and accepted"), "success"),
            "rejected": (self.env._("Credentials or signature rejected"), "danger"),
            "unreachable": (self.env._("Gateway unreachable"), "warning"),
            "incomplete": (self.env._("Settings incomplete"), "warning"),
        }
        title, kind = titles[verdict]
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": title,
                "message": detail,
                "type": kind,
                "sticky": True,
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    @api.model
    def get_values(self):
        values = super().get_values()
        values["qimen_dispatch_runs"] = len(self.env["qimen.sync.job"]._dispatch_crons())
        return values

    def set_values(self):
        result = super().set_values()
        jobs = self.env["qimen.sync.job"]
        if self.qimen_dispatch_runs != len(jobs._dispatch_crons()):
            jobs._set_dispatch_runs(self.qimen_dispatch_runs)
        return result
