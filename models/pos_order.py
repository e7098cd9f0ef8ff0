import json
import logging
from datetime import datetime

import psycopg2
from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, float_compare
from odoo.tools.sql import column_exists, create_column

from ..const import (
    ERP_STATUS_SELECTION,
    EVENT_STATUS,
    ORDER_WIRE_FIELDS,
    VOID_TYPE_SELECTION,
)
from ..qimen.inbound import transition
from ..qimen.timeutil import parse_gmt8_to_utc_naive, to_gmt8

_logger = logging.getLogger(__name__)
# what an ERP call reads of an order before it writes it
ERP_ORDER_FIELDS = ["qimen_erp_status", "qimen_cancelled", "qimen_finished", "qimen_confirmor"]


class PosOrder(models.Model):
    _name = "pos.order"
    _inherit = ["pos.order", "mail.activity.mixin"]

    qimen_bill_code = fields.Char(
        "ERP Bill Code",
        compute="_compute_qimen_bill_code",
        store=True,
        readonly=False,
        index=True,
        copy=False,
        help="Sent as orderBillCode; the POS reference unless the order came from the ERP.",
    )
    qimen_job_ids = fields.One2many("qimen.sync.job", "order_id", string="Sync Jobs")
    qimen_callback_ids = fields.One2many("qimen.callback.log", "order_id", string="ERP Callbacks")
    qimen_sync_state = fields.Selection(
        [
            ("not_needed", "Not needed"),
            ("pending", "Pending"),
            ("synced", "Synced"),
            ("failed", "Failed"),
        ],
        string="ERP Sync",
        compute="_compute_qimen_sync",
        store=True,
        index=True,
    )
    qimen_sync_attempts = fields.Integer("Sync Attempts", compute="_compute_qimen_sync", store=True)
    qimen_last_sync = fields.Datetime("Last Sync", compute="_compute_qimen_sync", store=True)
    qimen_last_error = fields.Text("Last Sync Error", compute="_compute_qimen_sync", store=True)
    qimen_config_error = fields.Char(
        "Sync Not Sent Because",
        copy=False,
        readonly=True,
        help="Why an update of this order was not queued (sync configuration incomplete).",
    )
    # What the ERP knows of the order: the fields of the Qimen APIs.
    qimen_erp_status = fields.Selection(
        ERP_STATUS_SELECTION,
        string="ERP Status",
        copy=False,
        readonly=True,
        help="Last status the ERP reported for this order.",
    )
    qimen_confirm = fields.Selection(
        [("0", "Unconfirmed"), ("1", "Confirmed"), ("2", "Completed")],
        string="Confirmation",
        copy=False,
        readonly=True,
    )
    qimen_confirmor = fields.Char("Confirmed By", copy=False, readonly=True)
    qimen_confirm_date = fields.Datetime("Confirmed On", copy=False, readonly=True)
    qimen_delivery = fields.Selection(
        [("0", "Not picked up"), ("1", "Picked up")], string="Pick-up", copy=False, readonly=True
    )
    qimen_delivery_date = fields.Datetime("Picked Up On", copy=False, readonly=True)
    qimen_cancelled = fields.Boolean("Voided", copy=False, readonly=True)
    qimen_canceler = fields.Char("Voided By", copy=False, readonly=True)
    qimen_cancel_date = fields.Datetime("Voided On", copy=False, readonly=True)
    qimen_finished = fields.Boolean("Finished", copy=False, readonly=True)
    qimen_finish_date = fields.Datetime("Finished On", copy=False, readonly=True)
    qimen_shipping_code = fields.Char("Courier Code", copy=False)
    qimen_shipping_sn = fields.Char("Tracking Number", copy=False)
    qimen_void_type = fields.Selection(VOID_TYPE_SELECTION, string="Void Type", copy=False)
    qimen_void_reason = fields.Char("Void Reason", copy=False)
    # -- inbound: what the ERP reported, apart from what the store sent -------------------
    qimen_erp_status_date = fields.Datetime(
        "Reported by the ERP On",
        copy=False,
        readonly=True,
        help="When an ERP callback last applied a status to this order.",
    )

    def _auto_init(self):
        """Fill the new stored columns in SQL: computing them row by row would make the
        installation crawl on a database with millions of orders."""
        cr = self.env.cr
        if not column_exists(cr, "pos_order", "qimen_bill_code"):
            create_column(cr, "pos_order", "qimen_bill_code", "varchar")
            cr.execute(  # refunds copy the refunded order's reference: not theirs to send
                """UPDATE pos_order SET qimen_bill_code = pos_reference
                    WHERE NOT EXISTS (SELECT 1 FROM pos_order_line line
                                       WHERE line.order_id = pos_order.id
                                         AND line.refunded_orderline_id IS NOT NULL)"""
            )
        if not column_exists(cr, "pos_order", "qimen_sync_state"):
            create_column(cr, "pos_order", "qimen_sync_state", "varchar")
            cr.execute("UPDATE pos_order SET qimen_sync_state = 'not_needed'")
            for name, sql_type in (
                ("qimen_sync_attempts", "int4"),
                ("qimen_last_sync", "timestamp"),
                ("qimen_last_error", "text"),
            ):
                create_column(cr, "pos_order", name, sql_type)
        return super()._auto_init()

    @api.depends("pos_reference")
    def _compute_qimen_bill_code(self):
        for order in self:
            if not order.qimen_bill_code:
                order.qimen_bill_code = order.pos_reference or False

    @api.depends(
        "qimen_job_ids.state",
        "qimen_job_ids.attempts",
        "qimen_job_ids.last_error",
        "qimen_job_ids.date_done",
        "qimen_config_error",
    )
    def _compute_qimen_sync(self):
        for order in self:
            jobs = order.qimen_job_ids.filtered(
                lambda j: j.state not in ("superseded", "cancelled")
            ).sorted("id")
            states = set(jobs.mapped("state"))
            if "dead" in states:
                state = "failed"
            elif states & {"pending", "sending", "failed"}:
                state = "pending"
            elif jobs:
                state = "synced"
            else:
                state = "failed" if order.qimen_config_error else "not_needed"
            failing = jobs.filtered("last_error")[-1:]
            order.qimen_sync_state = state
            order.qimen_sync_attempts = sum(jobs.mapped("attempts"))
            order.qimen_last_sync = max(filter(None, jobs.mapped("date_done")), default=False)
            order.qimen_last_error = (
                failing.last_error
                if failing and failing.state != "done"
                else order.qimen_config_error or False
            )

    # -- hooks: enqueue only, never raise ------------------------------------------------
    def _process_saved_order(self, draft):
        order_id = super()._process_saved_order(draft)
        if not draft:
            self._qimen_safely(self._qimen_on_paid)
        return order_id

    def write(self, vals):
        res = super().write(vals)
        if vals.get("state") == "cancel" and not self.env.context.get("qimen_from_erp"):
            self._qimen_safely(self._qimen_on_cancel)
        return res

    def _qimen_safely(self, method, *args):
        """Run a sync hook without ever breaking the POS transaction around it.

        Database errors (a serialization failure when the dispatcher updates the same rows)
        are raised, as point_of_sale does: Odoo then retries the whole request, where
        swallowing them would lose the update."""
        try:
            with self.env.cr.savepoint():
                method(*args)
        except psycopg2.DatabaseError:
            raise
        except Exception:
            _logger.exception("Qimen sync: could not queue an update of %s", self.ids)

    def _qimen_cashier(self):
        self.ensure_one()
        employee = self._fields.get("employee_id") and self.employee_id
        return (employee and employee.name) or self.user_id.name or self.env.user.name

    def _qimen_on_paid(self):
        now = fields.Datetime.now()
        for order in self.filtered(lambda o: o.state in ("paid", "done", "invoiced")):
            if not order.company_id.qimen_enabled:
                continue
            if order.refunded_order_id:
                order._qimen_on_refund(now)
                continue
            order.write(
                {
                    "qimen_confirm": "1",
                    "qimen_confirmor": order._qimen_cashier(),
                    "qimen_confirm_date": now,
                }
            )
            order._qimen_enqueue("confirm")
            if order.company_id.qimen_pickup_on_paid and not order.shipping_date:
                order.write({"qimen_delivery": "1", "qimen_delivery_date": now})
                order._qimen_enqueue("pickup")

    def _qimen_on_refund(self, now):
        """A paid refund may void the order it refunds (customer return)."""
        policy = self.company_id.qimen_refund_policy
        for original in self.refunded_order_id:
            if policy == "never" or original.qimen_cancelled:
                continue
            if policy == "full" and not original._qimen_fully_refunded():
                continue
            original.write(
                {
                    "qimen_cancelled": True,
                    "qimen_canceler": self._qimen_cashier(),
                    "qimen_cancel_date": now,
                    "qimen_void_type": "0",
                    "qimen_void_reason": original.qimen_void_reason
                    or self.env._("Returned: %s", self.name),
                }
            )
            original._qimen_enqueue("void")

    def _qimen_fully_refunded(self):
        self.ensure_one()
        digits = self.env["decimal.precision"].precision_get("Product Unit of Measure")
        lines = self.lines.filtered(lambda line: line.qty > 0)
        return bool(lines) and all(
            float_compare(line.refunded_qty, line.qty, precision_digits=digits) >= 0
            for line in lines
        )

    def _qimen_on_cancel(self):
        """A cancelled draft is voided in the ERP; an empty one never existed for it."""
        now = fields.Datetime.now()
        orders = self.filtered(
            lambda o: o.lines and not o.refunded_order_id and o.company_id.qimen_enabled
        )  # a cancelled refund is no void of the order it refunds
        for order in orders:
            order.write(
                {
                    "qimen_cancelled": True,
                    "qimen_canceler": self.env.user.name,
                    "qimen_cancel_date": now,
                    "qimen_void_type": order.qimen_void_type or "1",
                }
            )
            order._qimen_enqueue("void")

    def _qimen_on_session_closed(self):
        now = fields.Datetime.now()
        orders = self.filtered(
            lambda o: (
                o.state in ("done", "invoiced")
                and not o.refunded_order_id
                and o.company_id.qimen_enabled
                and not o.qimen_cancelled
            )
        )
        for order in orders:
            order.write({"qimen_confirm": "2", "qimen_finished": True, "qimen_finish_date": now})
            order._qimen_enqueue("complete")

    def _qimen_on_picked_up(self, picking):
        self.ensure_one()
        if not self.company_id.qimen_enabled or self.qimen_delivery == "1" or self.qimen_cancelled:
            return
        vals = {
            "qimen_delivery": "1",
            "qimen_delivery_date": picking.date_done or fields.Datetime.now(),
        }
        carrier = "carrier_id" in picking._fields and picking.carrier_id
        if carrier:
            vals["qimen_shipping_code"] = carrier.name
        if "carrier_tracking_ref" in picking._fields and picking.carrier_tracking_ref:
            vals["qimen_shipping_sn"] = picking.carrier_tracking_ref
        self.write(vals)
        self._qimen_enqueue("pickup")

    # -- the snapshot ------------------------------------------------------------------
    def _qimen_enqueue(self, event):
        """Queue ``event`` with a snapshot of the order, or say why it cannot be."""
        self.ensure_one()
        problems = self.company_id._qimen_config_problems()
        customerid = self.config_id._qimen_customerid()
        if not customerid:
            problems.append(self.env._("customer ID (customerid) of the shop or company"))
        if problems:
            self.qimen_config_error = self.env._(
                "Qimen sync is enabled but not configured: missing %s.", ", ".join(problems)
            )
            return self.env["qimen.sync.job"]
        if self.qimen_config_error:
            self.qimen_config_error = False
        if not self.qimen_bill_code:  # an order made in the back office has no POS reference
            self.qimen_bill_code = self.pos_reference or self.name
        return self.env["qimen.sync.job"]._enqueue(self, event, self._qimen_payload(event))

    def _qimen_payload(self, event):
        """Every parameter of qimen.taobao.pos.salesorder.update for this order, now."""
        self.ensure_one()
        payload = {
            "orderBillCode": self.qimen_bill_code,
            "status": EVENT_STATUS[event],
            "customerid": self.config_id._qimen_customerid(),
        }
        for field_name, wire in ORDER_WIRE_FIELDS.items():
            value = self[field_name]
            if value:
                payload[wire] = to_gmt8(value) if wire.endswith("Date") else value
        if self.qimen_cancelled:
            payload["cancle"] = "1"
        if self.qimen_finished:
            payload["finish"] = "1"
        payload["extendProps"] = json.dumps(
            {
                "event": event,
                "posOrder": self.name,
                "shop": self.config_id.name,
                "amountTotal": f"{self.amount_total:.2f}",
                "currency": self.currency_id.name,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return payload

    def _prepare_refund_values(self, current_session):
        # a refund copies the POS reference, but it is not an order of the ERP
        return dict(super()._prepare_refund_values(current_session), qimen_bill_code=False)

    # -- inbound: the ERP updates the order ------------------------------------------------
    @api.model
    def _qimen_find_by_bill_code(self, company, bill_code, lock=False):
        """Return ``(order, error)``: the company's order with this ERP bill code.

        ``lock``: lock it until the transaction ends, so that ERP calls about one order
        apply one after the other. When another transaction changed the order since this
        one began, PostgreSQL raises a serialization failure and Odoo runs the request
        again: that is expected, so it is not logged as a bad query."""
        if lock:
            self.env.cr.execute(
                SQL(
                    "SELECT id FROM pos_order WHERE company_id = %s AND qimen_bill_code = %s "
                    "LIMIT 2 FOR NO KEY UPDATE",
                    company.id,
                    bill_code,
                ),
                log_exceptions=False,
            )
            orders = self.browse(row[0] for row in self.env.cr.fetchall())
        else:
            orders = self.search(
                [("company_id", "=", company.id), ("qimen_bill_code", "=", bill_code)], limit=2
            )
        if not orders:
            return self, self.env._("Order %s not found", bill_code)
        if len(orders) > 1:
            return self, self.env._("Several orders have the bill code %s", bill_code)
        return orders, None

    def _qimen_apply_erp_update(self, params):
        """Apply what the ERP says of the order as the transition table says (README):
        return True when applied, False when only recorded (the order is unchanged).

        A void cancels a draft order, and asks a POS manager to refund a paid order (Odoo
        cannot cancel it)."""
        self.ensure_one()
        # only what is used (an order has a hundred columns; this runs on every ERP call)
        self.fetch(["state", "company_id", *ERP_ORDER_FIELDS])
        status = params["status"]
        applied, new_status = transition(
            status, self.qimen_erp_status, self.qimen_cancelled, self.qimen_finished
        )
        if applied:
            order = self.with_context(qimen_from_erp=True)
            order.write(self._qimen_erp_values(params, new_status))
            if status == "3" and self.state == "draft":
                order.action_pos_order_cancel()
            elif status == "3" and self.state in ("paid", "done", "invoiced"):
                reason = params.get("zf_message")
                self._qimen_ask_manager(
                    lambda env: env._("Voided in the ERP: refund this order"),
                    lambda env: env._(
                        "The ERP voided this paid order (%(reason)s). Odoo cannot cancel a "
                        "paid order: refund it in the Point of Sale.",
                        reason=reason or env._("no reason given"),
                    ),
                )
        self._qimen_post_erp_update(params, applied)
        return applied

    def _qimen_erp_values(self, params, new_status):
        now = fields.Datetime.now()

        def date(name):
            return parse_gmt8_to_utc_naive(params[name]) if params.get(name) else now

        vals = {"qimen_erp_status": new_status, "qimen_erp_status_date": now}
        for wire, field_name in (
            ("shippingCode", "qimen_shipping_code"),
            ("shippingSn", "qimen_shipping_sn"),
        ):
            if params.get(wire):
                vals[field_name] = params[wire]
        status = params["status"]
        if status == "1":
            vals.update(
                qimen_confirm=params.get("confirm") or "1",
                qimen_confirmor=params.get("confirmor") or self.qimen_confirmor,
                qimen_confirm_date=date("confirmDate"),
            )
        elif status == "2":
            vals.update(qimen_delivery="1", qimen_delivery_date=date("deliveryDate"))
        elif status == "3":
            vals.update(
                qimen_cancelled=True,
                qimen_canceler=params.get("canceler"),
                qimen_cancel_date=date("cancleDate"),
                qimen_void_type=params.get("zf_type") or "1",
                qimen_void_reason=params.get("zf_message"),
            )
        elif status == "4":
            vals.update(
                qimen_finished=True, qimen_confirm="2", qimen_finish_date=date("finishDate")
            )
        return vals

    def _qimen_post_erp_update(self, params, applied=True):
        """A note of what the ERP said, in the language of the company (its readers; the
        context key ``qimen_reader_lang`` may give it)."""
        self.ensure_one()
        lang = self.env.context.get("qimen_reader_lang") or self.company_id.partner_id.lang
        order = self.with_context(lang=lang or self.env.lang)
        env = order.env
        labels = dict(order._fields["qimen_erp_status"]._description_selection(env))
        status = labels[params["status"]]
        if applied:
            title = env._("The ERP reported this order as %s.", status)
        elif params["status"] == "5":
            title = env._("The ERP reported this order as %s; the order is unchanged.", status)
        elif self.qimen_cancelled:
            title = env._("The ERP reported this order as %s; not applied: it is voided.", status)
        else:
            title = env._("The ERP reported this order as %s; not applied: it is finished.", status)
        details = Markup().join(
            Markup("<li>%s: %s</li>") % (label, value)
            for label, value in order._qimen_erp_details(params)
        )
        # the note's reply-to is the company's catchall: read only what it needs
        self.env.company.fetch(["name", "alias_domain_id"])
        order._message_log(  # a note, no notification: runs on every ERP call
            body=Markup("<p>%s</p><ul>%s</ul>") % (title, details),
            author_id=self.env["ir.model.data"]._xmlid_to_res_id("base.partner_root"),
            email_from=False,
        )

    def _qimen_erp_details(self, params):
        """``(label, value)`` of each field of an ERP call, named as its readers know it
        (the order's field labels, in the environment's language)."""
        env = self.env
        field_names = {wire: name for name, wire in ORDER_WIRE_FIELDS.items()}
        field_names.update(cancle="qimen_cancelled", finish="qimen_finished")
        other_labels = {
            "fhck_code": env._("Shipping Warehouse"),
            "extendProps": env._("Extra Properties"),
            "customerid": env._("Customer ID"),
        }
        details = []
        for name, value in params.items():
            if name in ("orderBillCode", "status") or not value:
                continue
            if name == "mx_list":
                details.append((env._("Lines"), env._("%s lines", len(value))))
                continue
            field = self._fields.get(field_names.get(name, ""))
            if field is None:
                details.append((other_labels.get(name, name), value))
                continue
            shown = value
            if field.type == "selection":
                shown = dict(field._description_selection(env)).get(value, value)
            details.append((field._description_string(env), shown))
        return details

    def _qimen_ask_manager(self, summary, note):
        """One to-do for a POS manager of the company (the order's user if none).

        ``summary`` and ``note`` are texts, or functions of an environment that give them
        in the language of the user the to-do is for."""
        self.ensure_one()
        managers = self.env.ref("point_of_sale.group_pos_manager").users.filtered(
            lambda u: self.company_id in u.company_ids and not u.share
        )
        user = managers.sorted("id")[:1] or self.user_id
        env = self.with_context(lang=user.lang or self.env.lang).env
        summary = summary(env) if callable(summary) else summary
        note = note(env) if callable(note) else note
        if self.activity_ids.filtered(lambda a: a.summary == summary):
            return  # already asked, not again on every attempt or repeat
        self.activity_schedule(
            "mail.mail_activity_data_todo", summary=summary, note=note, user_id=user.id
        )

    def _qimen_requeue(self):
        """Queue the updates an order missed while the sync settings were incomplete,
        in the order they happened (the hooks record them on the order either way)."""
        for order in self.filtered("qimen_config_error"):
            happened = [
                (order.qimen_confirm_date, "confirm", order.qimen_confirm in ("1", "2")),
                (order.qimen_delivery_date, "pickup", order.qimen_delivery == "1"),
                (order.qimen_cancel_date, "void", order.qimen_cancelled),
                (order.qimen_finish_date, "complete", order.qimen_finished),
            ]
            for _date, event, done in sorted(happened, key=lambda h: h[0] or datetime.max):
                if done:
                    order._qimen_enqueue(event)

    # -- actions -----------------------------------------------------------------------
    def action_qimen_void(self):
        """Open the void-reason wizard (cancels draft orders)."""
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Void with a Reason"),
            "res_model": "qimen.void.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {
                "active_model": "pos.order",
                "active_ids": self.ids,
                "default_void_type": self[:1].qimen_void_type or "1",
            },
        }

    def action_qimen_sync_now(self):
        """Queue the order's failed or missed updates and have them sent right away."""
        self._qimen_requeue()
        problems = self.filtered("qimen_config_error").mapped("qimen_config_error")
        if problems:
            raise UserError(problems[0])
        jobs = self.qimen_job_ids.filtered(lambda j: j.state in ("pending", "failed", "dead"))
        if not jobs:
            raise UserError(self.env._("There is no update of this order waiting to be sent."))
        return jobs.action_retry()
