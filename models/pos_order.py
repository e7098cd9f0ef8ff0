import json
import logging
from datetime import datetime

import psycopg2
from markupsafe import Markup

from odoo import api, fields, models, tools
from odoo.exceptions import UserError
from odoo.osv import expression
from odoo.tools import SQL, float_compare
from odoo.tools.sql import column_exists, create_column

from ..const import (
    ERP_STATUS_SELECTION,
    EVENT_STATUS,
    JOB_STATE_SELECTION,
    ORDER_EVENTS,
    ORDER_WIRE_FIELDS,
    POS_ORDER_FIELDS,
    VOID_TYPE_SELECTION,
)
from ..qimen.inbound import transition
from ..qimen.timeutil import to_gmt8

_logger = logging.getLogger(__name__)
# what an ERP call reads of an order before it writes it
ERP_ORDER_FIELDS = ["qimen_erp_status", "qimen_erp_reported", "qimen_cancelled", "qimen_finished"]


class QueueBatch:
    """The updates of one POS call, queued together (compared and hashed by identity,
    as a context value)."""

    def __init__(self):
        self.snapshots = []


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
        help="Sent as orderBillCode; the POS reference unless the order came from the ERP. "
        "It cannot change once an update of the order went out: the ERP knows the order by it.",
    )
    qimen_job_ids = fields.One2many("qimen.sync.job", "order_id", string="Sync Jobs")
    qimen_callback_ids = fields.One2many("qimen.callback.log", "order_id", string="ERP Callbacks")
    # Computed from the jobs, never stored: the dispatcher must not write the pos_order
    # rows that the till writes (a session closing rewrites every order of the session).
    qimen_sync_state = fields.Selection(
        [
            ("not_needed", "Not needed"),
            ("pending", "Pending"),
            ("synced", "Synced"),
            ("failed", "Failed"),
        ],
        string="ERP Sync",
        compute="_compute_qimen_sync",
        search="_search_qimen_sync_state",
        compute_sudo=True,
    )
    qimen_sync_attempts = fields.Integer(
        "Failed Attempts",
        compute="_compute_qimen_sync",
        compute_sudo=True,
        help="Attempts that failed for the update this order waits on (0 when every update "
        "was acknowledged).",
    )
    qimen_last_sync = fields.Datetime(
        "Last Acknowledged On", compute="_compute_qimen_sync", compute_sudo=True
    )
    qimen_last_error = fields.Text(
        "Last Sync Error", compute="_compute_qimen_sync", compute_sudo=True
    )
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
    # What the ERP told about the order, kept apart from what the store records (the
    # qimen_* facts above, which the store's updates send): the business fields of its
    # applied calls, the latest value of each.
    qimen_erp_reported = fields.Json("ERP's Fields", copy=False, readonly=True)
    qimen_erp_reported_text = fields.Text(
        "Details Reported by the ERP", compute="_compute_qimen_erp_reported_text"
    )
    # On a refund: why the customer returned the goods, given by the cashier at the till
    # and sent with the void of the refunded order.
    qimen_return_type = fields.Selection(VOID_TYPE_SELECTION, string="Return Type", copy=False)
    qimen_return_reason = fields.Char(
        "Return Reason",
        copy=False,
        help="Sent to the ERP with the void of the refunded order (zf_message).",
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
        return super()._auto_init()

    @api.depends("name", "pos_reference")
    def _compute_display_name(self):
        """A draft saved by the POS is named "/" until it is paid: show its POS reference,
        as the till does (void wizard, sync queue, any many2one to the order)."""
        for order in self:
            unnamed = order.name == "/" and order.pos_reference
            order.display_name = order.pos_reference if unnamed else order.name

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
        """One query for all the orders: the POS reads this on every paid order."""
        jobs_of = {order_id: [] for order_id in self.ids if isinstance(order_id, int)}
        if jobs_of:
            self.env["qimen.sync.job"].flush_model(
                ["order_id", "state", "attempts", "last_error", "date_done"]
            )
            self.env.cr.execute(
                SQL(
                    """SELECT order_id, state, attempts, last_error, date_done
                         FROM qimen_sync_job WHERE order_id IN %s ORDER BY id""",
                    tuple(jobs_of),
                )
            )
            for order_id, *job in self.env.cr.fetchall():
                jobs_of[order_id].append(job)
        for order in self:
            all_jobs = jobs_of.get(order.id, [])
            jobs = [job for job in all_jobs if job[0] not in ("superseded", "cancelled")]
            waiting = next((job for job in jobs if job[0] != "done"), None)  # queue's head
            if any(job[0] == "dead" for job in jobs):
                state = "failed"
            elif waiting:
                state = "pending"
            elif jobs:
                state = "synced"
            elif order.qimen_config_error:
                state = "failed"
            elif not all_jobs and order._qimen_recorded_events():
                state = "synced"  # its updates went out, and were deleted after the retention
            else:
                state = "not_needed"
            order.qimen_sync_state = state
            order.qimen_sync_attempts = waiting[1] - (waiting[0] == "sending") if waiting else 0
            order.qimen_last_sync = max((job[3] for job in jobs if job[3]), default=False)
            order.qimen_last_error = (
                (waiting and waiting[2]) or (not jobs and order.qimen_config_error) or False
            )

    def _search_qimen_sync_state(self, operator, value):
        """The same rules as the compute, as subqueries on the jobs' partial indexes."""
        if operator not in ("=", "!=", "in", "not in"):
            raise UserError(self.env._("Unsupported search on the ERP sync state."))
        states = {value} if isinstance(value, str) or not value else set(value)

        def orders_with(job_states):
            return SQL(
                "(SELECT order_id FROM qimen_sync_job WHERE order_id IS NOT NULL AND state IN %s)",
                tuple(job_states),
            )

        live = orders_with(("pending", "sending", "failed", "dead", "done"))
        dead = orders_with(("dead",))
        waiting = orders_with(("pending", "sending", "failed"))
        recorded = [
            "|",
            "|",
            "|",
            ("qimen_confirm", "in", ("1", "2")),
            ("qimen_delivery", "=", "1"),
            ("qimen_cancelled", "=", True),
            ("qimen_finished", "=", True),
        ]
        jobs_deleted = expression.AND(  # sent, then deleted after the retention period
            [
                [
                    ("id", "not in", orders_with([key for key, _label in JOB_STATE_SELECTION])),
                    ("qimen_config_error", "=", False),
                ],
                recorded,
            ]
        )
        domains = {
            "failed": [
                "|",
                ("id", "in", dead),
                "&",
                ("qimen_config_error", "!=", False),
                ("id", "not in", live),
            ],
            "pending": ["&", ("id", "in", waiting), ("id", "not in", dead)],
            "synced": expression.OR(
                [
                    [
                        ("id", "in", live),
                        ("id", "not in", orders_with(("pending", "sending", "failed", "dead"))),
                    ],
                    jobs_deleted,
                ]
            ),
            "not_needed": [
                "&",
                "&",
                ("id", "not in", live),
                ("qimen_config_error", "=", False),
                "!",
                *expression.normalize_domain(jobs_deleted),
            ],
        }
        chosen = [domains[state] for state in states if state in domains]
        domain = expression.OR(chosen) if chosen else expression.FALSE_DOMAIN
        if operator in ("!=", "not in"):
            return ["!", *expression.normalize_domain(domain)]
        return domain

    # -- what the Point of Sale loads ------------------------------------------------------
    @api.model
    def _load_pos_data_fields(self, config_id):
        """point_of_sale loads every field of an order (an empty list) and sends back
        every stored one on each sync: the till would then overwrite what the ERP and the
        dispatcher recorded meanwhile. It gets only the sync state to show and the return
        reason it sets, and only when its company syncs."""
        names = super()._load_pos_data_fields(config_id)
        names = list(self._qimen_till_fields(tuple(names)))
        if config_id and self.env["pos.config"].browse(config_id).company_id.qimen_enabled:
            names += POS_ORDER_FIELDS
        return names

    @tools.ormcache("self.env.uid", "self.env.su", "names")
    def _qimen_till_fields(self, names):
        """``names`` (none: every field this user may read, what point_of_sale reads)
        without this addon's: read on every order the till saves, hence cached."""
        if not names:
            names = [name for name, field in self._fields.items() if field.is_accessible(self.env)]
        # the activity fields come with this addon (to-dos for managers), not for the till
        ours = set(self.env["mail.activity.mixin"]._fields) - set(self.env["mail.thread"]._fields)
        return tuple(name for name in names if not name.startswith("qimen_") and name not in ours)

    def action_pos_order_cancel(self):
        """The till sends the cashier's void reasons in the context of the cancellation
        itself (``qimen_voids``: ``{order id: {"type": "0"|"1", "message": text}}``):
        offline, the POS queues that one call with its arguments, so the reason cannot
        be lost apart from the void."""
        voids = self.env.context.get("qimen_voids")
        if voids:
            self._qimen_set_void_reasons(voids)
        return super().action_pos_order_cancel()

    def _qimen_set_void_reasons(self, voids):
        if not isinstance(voids, dict):
            raise UserError(self.env._("Invalid void reasons: %s", voids))
        by_reason = {}
        for order in self.filtered(lambda o: o.state == "draft"):
            void = voids.get(str(order.id), voids.get(order.id))
            if void is None:
                continue
            if (
                not isinstance(void, dict)
                or void.get("type") not in ("0", "1")
                or not isinstance(void.get("message") or "", str)
            ):
                raise UserError(
                    self.env._(
                        "Invalid void reason for order %(order)s: %(void)s",
                        order=order.display_name,
                        void=void,
                    )
                )
            message = (void.get("message") or "").strip() or False
            by_reason.setdefault((void["type"], message), []).append(order.id)
        for (void_type, message), ids in by_reason.items():  # usually one order, one write
            self.browse(ids).write({"qimen_void_type": void_type, "qimen_void_reason": message})

    # -- hooks: enqueue only, never raise ----------------------------------------------
    def action_pos_order_paid(self):
        """Paid (point_of_sale calls this while it saves a paid order, before its
        picking): the sync fields written here go out in the POS's own UPDATE."""
        res = super().action_pos_order_paid()
        self._qimen_safely(self._qimen_on_paid)
        return res

    def write(self, vals):
        self._qimen_check_bill_code_change(vals)
        res = super().write(vals)
        if vals.get("state") == "cancel" and not self.env.context.get("qimen_from_erp"):
            self._qimen_safely(self._qimen_on_cancel)
        return res

    def _qimen_safely(self, method, *args):
        """Run a sync hook without ever breaking the POS transaction around it.

        A hook computes in Python, then writes once: a Python error (logged) leaves
        nothing half done, so no savepoint is needed on the cashier's path. Database
        errors (a serialization failure) are raised, as point_of_sale does: Odoo then
        retries the whole request, where swallowing them would lose the update."""
        try:
            method(*args)
        except psycopg2.DatabaseError:
            raise
        except Exception:
            _logger.exception("Qimen sync: could not queue an update of %s", self.ids[:20])

    def _qimen_cashier(self):
        self.ensure_one()
        employee = self._fields.get("employee_id") and self.employee_id
        return (employee and employee.name) or self.user_id.name or self.env.user.name

    def _qimen_on_paid(self):
        """Paid: confirmed, and picked up when taken home at once. Each snapshot is taken
        from the order with what changed up to that event; the order is written once."""
        now = fields.Datetime.now()
        snapshots = []
        for order in self.filtered(
            lambda o: o.state in ("paid", "done", "invoiced") and o.company_id.qimen_enabled
        ):
            if order.refunded_order_id:
                order._qimen_on_refund(now)
                continue
            vals = {
                "qimen_confirm": "1",
                "qimen_confirmor": order._qimen_cashier(),
                "qimen_confirm_date": now,
            }
            snapshots.append(order._qimen_snapshot("confirm", vals))
            if order.company_id.qimen_pickup_on_paid and not order.shipping_date:
                vals = dict(vals, qimen_delivery="1", qimen_delivery_date=now)
                snapshots.append(order._qimen_snapshot("pickup", vals))
            order.write(vals)
        self._qimen_push(snapshots)

    def _qimen_on_refund(self, now):
        """A paid refund may void the order it refunds (customer return)."""
        policy = self.company_id.qimen_refund_policy
        voided = self.browse()
        for original in self.refunded_order_id:
            if policy == "never" or original._qimen_voided():
                continue
            if policy == "full" and not original._qimen_fully_refunded():
                continue
            void_type, reason = self._qimen_return_reason_for(original)
            original.write(
                {
                    "qimen_cancelled": True,
                    "qimen_canceler": self._qimen_cashier(),
                    "qimen_cancel_date": now,
                    "qimen_void_type": void_type,
                    "qimen_void_reason": reason,
                }
            )
            voided |= original
        self._qimen_queue([(original, "void") for original in voided])

    def _qimen_return_reason_for(self, original):
        """``(zf_type, zf_message)`` of the void that this refund causes: the cashier's
        reason, else one already recorded on the refunded order, else the shop's default
        return reason, else "Returned: <refund>"."""
        self.ensure_one()
        if self.qimen_return_reason:
            return self.qimen_return_type or "0", self.qimen_return_reason
        if original.qimen_void_reason:
            return "0", original.qimen_void_reason
        default = self.config_id.qimen_return_reason_id
        if default:
            return default.void_type, default.name
        return "0", self.env._("Returned: %s", self.name)

    def _qimen_voided(self):
        """Voided by the store, or reported voided by the ERP: nothing follows a void."""
        self.ensure_one()
        return self.qimen_cancelled or self.qimen_erp_status == "3"

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
        orders = self.filtered(
            lambda o: o.lines and not o.refunded_order_id and o.company_id.qimen_enabled
        )  # a cancelled refund is no void of the order it refunds
        now = fields.Datetime.now()
        for order in orders:
            order.write(
                {
                    "qimen_cancelled": True,
                    "qimen_canceler": self.env.user.name,  # who cancels, not who sold
                    "qimen_cancel_date": now,
                    "qimen_void_type": order.qimen_void_type or "1",
                }
            )
        self._qimen_queue([(order, "void") for order in orders])

    def _qimen_on_session_closed(self):
        """A closed session completes its orders: one write and one insert for all."""
        orders = self.filtered(
            lambda o: (
                o.state in ("done", "invoiced")
                and not o.refunded_order_id
                and o.company_id.qimen_enabled
                and not o._qimen_voided()
            )
        )
        orders.write(
            {
                "qimen_confirm": "2",
                "qimen_finished": True,
                "qimen_finish_date": fields.Datetime.now(),
            }
        )
        self._qimen_queue([(order, "complete") for order in orders])

    def _qimen_on_picked_up(self, picking):
        self.ensure_one()
        if not self.company_id.qimen_enabled or self.qimen_delivery == "1" or self._qimen_voided():
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
        self._qimen_queue([(self, "pickup")])

    # -- the snapshot ------------------------------------------------------------------
    @api.model
    def _qimen_queue(self, updates):
        """Queue ``updates``, a list of ``(order, event)``, in one insert."""
        return self._qimen_push([order._qimen_snapshot(event) for order, event in updates])

    def _qimen_push(self, snapshots):
        """Queue the snapshots now, or with the other orders of the same POS call (see
        :meth:`sync_from_ui`)."""
        snapshots = [snapshot for snapshot in snapshots if snapshot]
        batch = self.env.context.get("qimen_batch")
        if batch is not None:
            batch.snapshots += snapshots
            return self.env["qimen.sync.job"]
        return self.env["qimen.sync.job"]._enqueue(snapshots)

    @api.model
    def sync_from_ui(self, orders):
        """The orders of one call (an offline till catching up sends many) are queued
        with one insert, before the POS reads them back (with their sync state)."""
        return super(PosOrder, self.with_context(qimen_batch=QueueBatch())).sync_from_ui(orders)

    def read_pos_data(self, data, config_id):
        batch = self.env.context.get("qimen_batch")
        if batch is not None and batch.snapshots:
            snapshots, batch.snapshots = batch.snapshots, []
            self._qimen_safely(self.env["qimen.sync.job"]._enqueue, snapshots)
        return super().read_pos_data(data, config_id)

    def _qimen_snapshot(self, event, changes=None):
        """``(order, event, payload)`` to queue, taken now (with ``changes`` about to be
        written); None when the order cannot be sent: incomplete settings are recorded
        on the order, and a Python error in one order's snapshot loses that update only
        (logged)."""
        self.ensure_one()
        problems = self._qimen_sync_problems()
        if problems:
            self.qimen_config_error = self.env._(
                "Qimen sync is enabled but not configured: missing %s.", ", ".join(problems)
            )
            return None
        try:
            if not self.qimen_bill_code:  # a back-office order has no POS reference
                self.qimen_bill_code = self.pos_reference or self.name
            snapshot = (self, event, self._qimen_payload(event, changes))
        except Exception:
            _logger.exception("Qimen sync: no snapshot of order %s for %s", self.id, event)
            return None
        if self.qimen_config_error:
            self.qimen_config_error = False
        return snapshot

    def _qimen_sync_problems(self):
        self.ensure_one()
        problems = self.company_id._qimen_config_problems()
        if not self.config_id._qimen_customerid():
            problems.append(self.env._("customer ID (customerid) of the shop or company"))
        return problems

    def _qimen_payload(self, event, changes=None):
        """Every parameter of qimen.taobao.pos.salesorder.update for this order, now
        (``changes``: field values about to be written)."""
        self.ensure_one()
        changes = changes or {}
        payload = {
            "orderBillCode": self.qimen_bill_code,
            "status": EVENT_STATUS[event],
            "customerid": self.config_id._qimen_customerid(),
        }
        for field_name, wire in ORDER_WIRE_FIELDS.items():
            value = changes[field_name] if field_name in changes else self[field_name]
            if value:
                payload[wire] = to_gmt8(value) if wire.endswith("Date") else value
        if self.qimen_cancelled:
            payload["cancle"] = "1"
        if self.qimen_finished:
            payload["finish"] = "1"
        payload["extendProps"] = json.dumps(
            {
                "event": event,
                "posOrder": self.display_name,  # a saved draft's POS reference, not "/"
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
        current = self.qimen_erp_status
        applied, new_status = transition(
            status,
            current,
            voided=self.qimen_cancelled or current == "3",
            finished=self.qimen_finished or current == "4",
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
        """What an applied call writes: the ERP's status, when, and its fields (merged
        with what it reported before); never the store's own facts."""
        reported = dict(self.qimen_erp_reported or {})
        reported.update(
            (name, value)
            for name, value in params.items()
            if value and name not in ("orderBillCode", "status", "customerid", "mx_list")
        )
        return {
            "qimen_erp_status": new_status,
            "qimen_erp_status_date": fields.Datetime.now(),
            "qimen_erp_reported": reported,
        }

    @api.depends("qimen_erp_reported")
    @api.depends_context("lang")
    def _compute_qimen_erp_reported_text(self):
        for order in self:
            details = order._qimen_erp_details(order.qimen_erp_reported or {})
            order.qimen_erp_reported_text = "\n".join(
                f"{label}: {value}" for label, value in details
            )

    def _qimen_for_readers(self):
        """The order in the language of its readers: the company's (the context key
        ``qimen_reader_lang`` may give it)."""
        lang = self.env.context.get("qimen_reader_lang") or self.company_id.partner_id.lang
        return self.with_context(lang=lang or self.env.lang)

    def _qimen_post_erp_update(self, params, applied=True):
        """A note of what the ERP said, in the language of the company (its readers; the
        context key ``qimen_reader_lang`` may give it)."""
        self.ensure_one()
        order = self._qimen_for_readers()
        env = order.env
        labels = dict(order._fields["qimen_erp_status"]._description_selection(env))
        status = labels[params["status"]]
        if applied:
            title = env._("The ERP reported this order as %s.", status)
        elif params["status"] == "5":
            title = env._("The ERP reported this order as %s; the order is unchanged.", status)
        elif self._qimen_voided():  # by the store, or by the ERP earlier
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
            elif field.type == "boolean":  # the ERP's flags: cancle=1, finish=1
                shown = env._("Yes") if str(value).lower() in ("1", "true") else env._("No")
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
        updates = []
        for order in self.filtered("qimen_config_error"):
            happened = [
                (order.qimen_confirm_date, "confirm", order.qimen_confirm in ("1", "2")),
                (order.qimen_delivery_date, "pickup", order.qimen_delivery == "1"),
                (order.qimen_cancel_date, "void", order.qimen_cancelled),
                (order.qimen_finish_date, "complete", order.qimen_finished),
            ]
            for _date, event, done in sorted(happened, key=lambda h: h[0] or datetime.max):
                if done:
                    updates.append((order, event))
        self._qimen_queue(updates)

    # -- actions -----------------------------------------------------------------------
    def action_qimen_void(self):
        """Open the void-reason wizard (cancels draft orders)."""
        self._qimen_check_voidable()
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

    def _qimen_check_voidable(self):
        not_draft = self.filtered(lambda o: o.state != "draft")
        if not_draft:
            raise UserError(
                self.env._(
                    "Only new (draft) orders can be voided; refund paid orders instead: %s",
                    ", ".join(not_draft.mapped("display_name")),
                )
            )

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

    # -- back office: what each update became, and the bill code lock ---------------------
    # Non-stored, computed in one pass over the order's jobs, for the order form only.
    qimen_sent_confirm_state = fields.Selection(
        JOB_STATE_SELECTION, "Paid: Sent", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_confirm_date = fields.Datetime(
        "Paid: Acknowledged On", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_pickup_state = fields.Selection(
        JOB_STATE_SELECTION, "Picked up: Sent", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_pickup_date = fields.Datetime(
        "Picked up: Acknowledged On", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_void_state = fields.Selection(
        JOB_STATE_SELECTION, "Voided: Sent", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_void_date = fields.Datetime(
        "Voided: Acknowledged On", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_complete_state = fields.Selection(
        JOB_STATE_SELECTION, "Completed: Sent", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_sent_complete_date = fields.Datetime(
        "Completed: Acknowledged On", compute="_compute_qimen_sent", compute_sudo=True
    )
    qimen_bill_code_locked = fields.Boolean(
        "ERP Bill Code Locked",
        compute="_compute_qimen_sent",
        compute_sudo=True,
        help="An update of the order went out: the ERP knows the order by its bill code.",
    )

    @api.depends(
        "qimen_job_ids.state",
        "qimen_job_ids.date_done",
        "qimen_job_ids.last_request",
        "qimen_erp_status",
        "qimen_config_error",
        "qimen_confirm",
        "qimen_delivery",
        "qimen_cancelled",
        "qimen_finished",
    )
    def _compute_qimen_sent(self):
        for order in self:
            latest = {}  # event -> its live job, else its latest superseded or cancelled one
            went_out = False
            for job in order.qimen_job_ids.sorted("id"):
                went_out = went_out or job.state in ("sending", "done") or bool(job.last_request)
                known = latest.get(job.event)
                if not known or known.state in ("superseded", "cancelled"):
                    latest[job.event] = job
            for event in ORDER_EVENTS:
                job = latest.get(event)
                order[f"qimen_sent_{event}_state"] = job.state if job else False
                order[f"qimen_sent_{event}_date"] = job.date_done if job else False
            # The retention period deletes sent jobs: an event the order records with no
            # job left went out (unless it was never queued, for lack of settings).
            deleted = order._qimen_recorded_events() - set(latest)
            order.qimen_bill_code_locked = bool(
                went_out or order.qimen_erp_status or (deleted and not order.qimen_config_error)
            )

    def _qimen_recorded_events(self):
        """The events the store recorded on the order (each one queued an update)."""
        self.ensure_one()
        recorded = {
            "confirm": self.qimen_confirm in ("1", "2"),
            "pickup": self.qimen_delivery == "1",
            "void": self.qimen_cancelled,
            "complete": self.qimen_finished,
        }
        return {event for event, happened in recorded.items() if happened}

    def _qimen_check_bill_code_change(self, vals):
        """The ERP knows an order by its bill code: once an update went out, changing the
        code would make it a new order in the ERP. Before, the code may change, and the
        updates queued with the old one are queued again with the new one."""
        if "qimen_bill_code" not in vals:
            return
        new_code = vals["qimen_bill_code"]
        changing = self.filtered(lambda o: o.qimen_bill_code and o.qimen_bill_code != new_code)
        if not changing:
            return
        locked = changing.filtered("qimen_bill_code_locked")
        if locked:
            raise UserError(
                self.env._(
                    "The ERP bill code of %(orders)s cannot be changed: an update of the order "
                    "already went out, and the ERP knows the order by %(codes)s. Changing it "
                    "would create another order in the ERP.",
                    orders=", ".join(locked.mapped("display_name")),
                    codes=", ".join(locked.mapped("qimen_bill_code")),
                )
            )
        jobs = changing.qimen_job_ids
        if not new_code:
            if jobs:
                raise UserError(self.env._("An order with updates for the ERP needs a bill code."))
            return
        if len(changing) > 1:
            raise UserError(self.env._("Each order needs a bill code of its own."))
        changing._qimen_check_bill_code_free(new_code)
        if jobs:
            changing._qimen_rekey_jobs(jobs, new_code)

    def _qimen_check_bill_code_free(self, code):
        """Two orders of a company with one bill code would be one order in the ERP."""
        self.ensure_one()
        company = self.company_id
        other = self.sudo().search(
            [
                ("company_id", "=", company.id),
                ("qimen_bill_code", "=", code),
                ("id", "!=", self.id),
            ],
            limit=1,
        )
        used_by_jobs = (
            self.env["qimen.sync.job"]
            .sudo()
            .search_count(
                [
                    ("company_id", "=", company.id),
                    ("bill_code", "=", code),
                    ("order_id", "!=", self.id),
                ],
                limit=1,
            )
        )
        if other or used_by_jobs:
            raise UserError(
                self.env._(
                    "The ERP bill code %(code)s is already used by %(order)s.",
                    code=code,
                    order=other.name or self.env._("another order's updates"),
                )
            )

    @api.model
    def _qimen_rekey_jobs(self, jobs, code):
        """Queued updates that never went out are sent with the new bill code. The rows
        are locked first: a sender skips them until this transaction ends, and one that
        claimed a job since this transaction began makes the lock fail with a
        serialization error, which Odoo retries from the start (the change is then
        refused, since the update went out)."""
        self.env.flush_all()
        self.env.cr.execute(
            SQL("SELECT id FROM qimen_sync_job WHERE id IN %s FOR UPDATE", tuple(jobs.ids))
        )
        for job in jobs.sudo():
            job.write({"bill_code": code, "payload": dict(job.payload or {}, orderBillCode=code)})
