from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.osv import expression
from odoo.tools import split_every

from .. import payload
from ..const import RESEND_EVENT
from ..sync_rules import current_event, recorded_domain

# Orders built and inserted at a time: one INSERT each, the ORM's prefetch size.
BATCH = 1000


class QimenResendWizard(models.TransientModel):
    """Send orders again to an ERP that lost what it received (restored from a backup):
    one update per order with the order's whole current state.

    The updates are jobs like any other: sent after the order's earlier updates that
    still wait, queued once however often this runs while they wait, and nothing of the
    orders is written (the dispatcher and the ERP's callback own those fields)."""

    _name = "qimen.resend.wizard"
    _description = "Send POS Orders Again to the ERP"
    _check_company_auto = True

    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company
    )
    order_ids = fields.Many2many(
        "pos.order",
        string="Selected Orders",
        check_company=True,
        help="Only these orders (the selection of the order list).",
    )
    config_ids = fields.Many2many(
        "pos.config",
        string="Shops",
        check_company=True,
        help="Every shop of the company when empty.",
    )
    session_id = fields.Many2one(
        "pos.session",
        check_company=True,
        domain="[('config_id', 'in', config_ids)] if config_ids else []",
    )
    date_from = fields.Datetime("Ordered From")
    date_to = fields.Datetime("Ordered Until")
    order_count = fields.Integer("Orders to Send Again", compute="_compute_order_count")

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        if self.env.context.get("active_model") == "pos.order":
            orders = self.env["pos.order"].browse(self.env.context.get("active_ids", []))
            if len(orders.company_id) > 1:  # each company syncs with settings of its own
                raise UserError(self.env._("Select the orders of one company at a time."))
            if "order_ids" in fields_list:
                values["order_ids"] = [(6, 0, orders.ids)]
            if "company_id" in fields_list and orders:
                values["company_id"] = orders.company_id.id
        return values

    @api.depends("company_id", "order_ids", "config_ids", "session_id", "date_from", "date_to")
    def _compute_order_count(self):
        for wizard in self:
            wizard.order_count = self.env["pos.order"].search_count(wizard._order_domain())

    def _order_domain(self):
        """The company's orders within the filters that recorded an event (an update of
        theirs went out or was meant to): a draft never paid nor voided has nothing to
        send, a refund is no order of the ERP (it records nothing, has no bill code)."""
        self.ensure_one()
        domain = [("company_id", "=", self.company_id.id), ("qimen_bill_code", "!=", False)]
        if self.order_ids:
            domain.append(("id", "in", self.order_ids.ids))
        if self.config_ids:
            domain.append(("config_id", "in", self.config_ids.ids))
        if self.session_id:
            domain.append(("session_id", "=", self.session_id.id))
        if self.date_from:
            domain.append(("date_order", ">=", self.date_from))
        if self.date_to:
            domain.append(("date_order", "<=", self.date_to))
        return expression.AND([domain, recorded_domain()])

    def action_resend(self):
        """Queue the updates and say how many; the dispatcher sends them after commit."""
        self.ensure_one()
        company = self.company_id
        if not company.qimen_enabled:
            raise UserError(self.env._("Qimen sync is disabled for %s.", company.name))
        orders = self.env["pos.order"].search(self._order_domain(), order="id")
        if not orders:
            raise UserError(
                self.env._(
                    "No order matching these criteria was paid, picked up, voided or "
                    "completed: nothing to send."
                )
            )
        self._check_sendable(orders)
        Job = self.env["qimen.sync.job"]
        queued = Job.browse()
        for batch in split_every(BATCH, orders.ids, orders.browse):
            queued |= Job._enqueue(
                [
                    (order, RESEND_EVENT, payload.build(order, current_event(order)))
                    for order in batch
                ]
            )
        message = self.env._("%s orders queued to be sent again to the ERP.", len(queued))
        waiting = len(orders) - len(queued)
        if waiting:  # the unique index skipped them
            message = self.env._(
                "%(queued)s %(waiting)s orders were already waiting to be sent again: "
                "not queued twice.",
                queued=message,
                waiting=waiting,
            )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Send Again to the ERP"),
                "message": message,
                "type": "success" if queued else "warning",
                "sticky": False,
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def _check_sendable(self, orders):
        """Refuse before queueing what the dispatcher could only declare dead."""
        problems = self.company_id._qimen_config_problems()
        problems += orders.config_id._qimen_unrouted_problems(name_shops=True)
        if problems:
            raise UserError(
                self.env._("Qimen sync is not configured: missing %s.", ", ".join(problems))
            )
