"""The order's ERP side as the back office and the till see it: the fields the sync adds
to ``pos.order``, its sync state (from ``sync_rules.py``), and the point_of_sale methods
it hooks. What the hooks queue is in ``pos_order_events.py``; what the ERP's calls do to
an order is in ``pos_order_erp.py``."""

from odoo import api, fields, models, tools
from odoo.exceptions import UserError
from odoo.tools import SQL
from odoo.tools.sql import column_exists, create_column

from ..const import (
    BLOCKING_JOB_STATES,
    ERP_STATUS_SELECTION,
    JOB_STATE_SELECTION,
    ORDER_EVENTS,
    POS_ORDER_FIELDS,
    POS_ORDER_NUMBER,
    VOID_TYPE_SELECTION,
)
from ..sync_rules import (
    RECORDED_FIELDS,
    SYNC_STATE_SELECTION,
    event_states_sql,
    job_facts_sql,
    recorded_events,
    sync_state_sql,
)


class QueueBatch:
    """The updates of one POS call, queued together (compared and hashed by identity,
    as a context value)."""

    def __init__(self):
        self.snapshots = []


def default_bill_code(reference, prefix):
    """The shop's prefix and the till's order number (``00012-001-0003``), not the POS
    reference: the till translates its first word ("Order", "订单"), so the ERP would
    see one order format per language, with a space in it."""
    reference = reference or ""
    number = POS_ORDER_NUMBER.search(reference)
    number = number.group(0) if number else "".join(reference.split())
    return f"{prefix or ''}{number}" if number else False


class PaidFacts:
    """The sync's facts of the order ``id`` being paid, for point_of_sale's own write of
    the paid state to write them (compared and hashed by identity, as a context value)."""

    def __init__(self, order_id, vals):
        self.id, self.vals, self.written = order_id, vals, False


def _sent_fields():
    """What each event's update became, one pair of fields per event (non-stored,
    computed in one pass over the order's jobs, for the order form)."""
    labels = {"confirm": "Paid", "pickup": "Picked up", "void": "Voided", "complete": "Completed"}
    sent = {}
    for event in ORDER_EVENTS:
        sent[f"qimen_sent_{event}_state"] = fields.Selection(
            JOB_STATE_SELECTION,
            f"{labels[event]}: Sent",
            compute="_compute_qimen_sync",
            compute_sudo=True,
        )
        sent[f"qimen_sent_{event}_date"] = fields.Datetime(
            f"{labels[event]}: Acknowledged On",
            compute="_compute_qimen_sync",
            compute_sudo=True,
        )
    return sent


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
        help="Sent as orderBillCode: the shop's bill code prefix and the till's order "
        "number, the same in every language. It cannot change once an update of the order "
        "went out: the ERP knows the order by it.",
    )
    qimen_job_ids = fields.One2many("qimen.sync.job", "order_id", string="Sync Jobs")
    qimen_callback_ids = fields.One2many("qimen.callback.log", "order_id", string="ERP Callbacks")
    # Computed from the jobs, never stored: the dispatcher must not write the pos_order
    # rows that the till writes (a session closing rewrites every order of the session).
    qimen_sync_state = fields.Selection(
        SYNC_STATE_SELECTION,
        string="ERP Sync",
        compute="_compute_qimen_sync_state",
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
    # The ERP's latest call, applied or only recorded (a status 5 changes nothing of the
    # order, qimen_erp_status above stays what drives it): its status, when, and fields.
    qimen_erp_last_status = fields.Selection(
        ERP_STATUS_SELECTION,
        string="ERP's Latest Report",
        copy=False,
        readonly=True,
        help="The status of the ERP's latest call about this order, applied or only "
        "recorded; a repeat of what the ERP reported already is not a new report.",
    )
    qimen_erp_last_report_date = fields.Datetime("Latest Report On", copy=False, readonly=True)
    qimen_erp_last_report = fields.Json(
        "Fields of the ERP's Latest Report", copy=False, readonly=True
    )
    qimen_erp_shipped_line_ids = fields.One2many(
        "qimen.erp.shipped.line",
        "order_id",
        string="Shipped by the ERP",
        readonly=True,
        help="The lines (mx_list) of the ERP's latest call that listed them, matched to the "
        "order's products.",
    )
    qimen_erp_warehouse = fields.Char(
        "Shipping Warehouse",
        compute="_compute_qimen_erp_warehouse",
        help="The warehouse the ERP last named (fhck_code).",
    )
    # On a refund: why the customer returned the goods, given by the cashier at the till
    # and sent with the void of the refunded order.
    qimen_return_type = fields.Selection(VOID_TYPE_SELECTION, string="Return Type", copy=False)
    qimen_return_reason = fields.Char(
        "Return Reason",
        copy=False,
        help="Sent to the ERP with the void of the refunded order (zf_message).",
    )
    qimen_bill_code_locked = fields.Boolean(
        "ERP Bill Code Locked",
        compute="_compute_qimen_sync",
        compute_sudo=True,
        help="An update of the order went out: the ERP knows the order by its bill code.",
    )

    locals().update(_sent_fields())  # qimen_sent_<event>_state and _date, per event

    def _auto_init(self):
        """Fill the new stored columns in SQL: computing them row by row would make the
        installation crawl on a database with millions of orders."""
        cr = self.env.cr
        if not column_exists(cr, "pos_order", "qimen_bill_code"):
            create_column(cr, "pos_order", "qimen_bill_code", "varchar")
            cr.execute(  # refunds copy the refunded order's reference: not theirs to send
                """UPDATE pos_order
                      SET qimen_bill_code = COALESCE(
                              substring(pos_reference FROM %s),
                              NULLIF(regexp_replace(pos_reference, '\\s', '', 'g'), ''))
                    WHERE NOT EXISTS (SELECT 1 FROM pos_order_line line
                                       WHERE line.order_id = pos_order.id
                                         AND line.refunded_orderline_id IS NOT NULL)""",
                [POS_ORDER_NUMBER.pattern],
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
                order.qimen_bill_code = order._qimen_default_bill_code()

    def _qimen_default_bill_code(self):
        self.ensure_one()
        return default_bill_code(self.pos_reference, self.config_id.qimen_bill_code_prefix)

    @api.model_create_multi
    def create(self, vals_list):
        """The bill code goes in the order's INSERT: computed afterwards, it read the new
        row back (a query, and a millisecond of the till's request per paid order)."""
        sessions = self.env["pos.session"]
        vals_list = [
            vals
            if "qimen_bill_code" in vals or not vals.get("session_id")
            else dict(
                vals,
                qimen_bill_code=default_bill_code(
                    vals.get("pos_reference"),
                    sessions.browse(vals["session_id"]).config_id.qimen_bill_code_prefix,
                ),
            )
            for vals in vals_list
        ]
        return super().create(vals_list)

    def _qimen_sync_sql_ids(self, job_fields):
        """The ids of these orders that are in the database, with what the sync's SQL
        reads of them and of their jobs (``job_fields``) flushed first."""
        ids = tuple(order_id for order_id in self.ids if isinstance(order_id, int))
        if ids:
            self.env["qimen.sync.job"].flush_model(["order_id", *job_fields])
            self.flush_recordset(["qimen_config_error", *RECORDED_FIELDS])
        return ids

    @api.depends(
        "qimen_job_ids.state",
        "qimen_config_error",
        "qimen_confirm",
        "qimen_delivery",
        "qimen_cancelled",
        "qimen_finished",
    )
    def _compute_qimen_sync_state(self):
        """The sync state alone, by the rule of ``sync_rules.py``: the till reads it on
        every order it pays, and needs neither what became of each event's update nor
        the errors (the order form's, below, one query more)."""
        states = {}
        ids = self._qimen_sync_sql_ids(["state"])
        if ids:
            self.env.cr.execute(
                SQL(
                    "SELECT o.id, %s FROM pos_order o CROSS JOIN %s WHERE o.id IN %s",
                    sync_state_sql("o"),
                    job_facts_sql("o"),
                    ids,
                )
            )
            states = dict(self.env.cr.fetchall())
        for order in self:
            order.qimen_sync_state = states.get(order.id, "not_needed")

    @api.depends(
        "qimen_job_ids.state",
        "qimen_job_ids.attempts",
        "qimen_job_ids.last_error",
        "qimen_job_ids.date_done",
        "qimen_job_ids.last_request",
        "qimen_erp_status",
        "qimen_config_error",
        "qimen_confirm",
        "qimen_delivery",
        "qimen_cancelled",
        "qimen_finished",
    )
    def _compute_qimen_sync(self):
        """One query for all the orders, with the rules of ``sync_rules.py`` that the
        reconciliation report reads too: what became of each event's update, and the
        update the order waits on (its attempts and error)."""
        rows = {}
        ids = self._qimen_sync_sql_ids(
            ["event", "state", "attempts", "last_error", "date_done", "last_request"]
        )
        if ids:
            self.env.cr.execute(
                SQL(
                    """SELECT o.id, facts.*, events.*
                         FROM pos_order o CROSS JOIN %(facts)s CROSS JOIN %(events)s
                        WHERE o.id IN %(ids)s""",
                    facts=job_facts_sql("o"),
                    events=event_states_sql("o"),
                    ids=ids,
                )
            )
            names = [column.name for column in self.env.cr.description]
            rows = {row[0]: dict(zip(names, row, strict=True)) for row in self.env.cr.fetchall()}
        for order in self:
            row = rows.get(order.id) or {}
            order.qimen_sync_attempts = row.get("attempts") or 0
            order.qimen_last_sync = row.get("last_done") or False
            order.qimen_last_error = row.get("head_error") or (
                not row.get("live") and order.qimen_config_error
            )
            for event in ORDER_EVENTS:
                order[f"qimen_sent_{event}_state"] = row.get(f"{event}_state") or False
                order[f"qimen_sent_{event}_date"] = row.get(f"{event}_date") or False
            # The retention period deletes sent jobs: an event the order records with no
            # job left went out (unless it was never queued, for lack of settings).
            deleted = recorded_events(order) - {
                event for event in ORDER_EVENTS if row.get(f"{event}_state")
            }
            order.qimen_bill_code_locked = bool(
                row.get("went_out")
                or order.qimen_erp_status
                or (deleted and not order.qimen_config_error)
            )

    def _search_qimen_sync_state(self, operator, value):
        """The rule of the compute (``sync_rules.py``), in SQL: one probe of the jobs'
        order index per order."""
        if operator not in ("=", "!=", "in", "not in"):
            raise UserError(self.env._("Unsupported search on the ERP sync state."))
        states = (value,) if isinstance(value, str) or not value else tuple(value)
        self.env["qimen.sync.job"].flush_model(["order_id", "event", "state"])
        self.flush_model(["qimen_config_error", *RECORDED_FIELDS])
        candidates = SQL("TRUE")
        if set(states) <= {"failed", "pending"}:  # only orders with a job that waits, or
            # with settings missing: along the partial index of the waiting jobs, not a
            # probe of every order of the database
            candidates = SQL(
                """(o.qimen_config_error IS NOT NULL OR o.id IN (
                       SELECT order_id FROM qimen_sync_job WHERE state IN %s))""",
                BLOCKING_JOB_STATES,
            )
        query = SQL(
            "(SELECT o.id FROM pos_order o CROSS JOIN %s WHERE %s AND %s IN %s)",
            job_facts_sql("o"),
            candidates,
            sync_state_sql("o"),
            states,
        )
        return [("id", "in" if operator in ("=", "in") else "not in", query)]

    @api.depends("qimen_erp_reported")
    @api.depends_context("lang", "tz", "uid")
    def _compute_qimen_erp_reported_text(self):
        for order in self:
            details = order._qimen_erp_details(
                order.qimen_erp_reported or {}, tz=self.env.context.get("tz") or self.env.user.tz
            )
            order.qimen_erp_reported_text = "\n".join(
                f"{label}: {value}" for label, value in details
            )

    @api.depends("qimen_erp_reported", "qimen_erp_last_report")
    def _compute_qimen_erp_warehouse(self):
        for order in self:
            order.qimen_erp_warehouse = order._qimen_erp_said().get("fhck_code") or False

    # -- what the Point of Sale loads and calls ------------------------------------------
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

    def action_pos_order_paid(self):
        """Paid (point_of_sale calls this while it saves a paid order, before its
        picking). The sync's facts go in point_of_sale's own write of the paid state (a
        write of their own cost the till a fifth of the hook), and its updates are
        queued once that write is done."""
        facts = []
        self._qimen_safely(lambda: facts.extend(self._qimen_paid_facts() or ()))
        if not facts:
            res = super().action_pos_order_paid()
            self._qimen_safely(self._qimen_on_refund_paid)
            return res
        vals, updates = facts
        paid = PaidFacts(self.id, vals)
        res = super(PosOrder, self.with_context(qimen_paid=paid)).action_pos_order_paid()
        self._qimen_safely(self._qimen_paid_written, paid, updates)
        return res

    def write(self, vals):
        paid = self.env.context.get("qimen_paid")
        if paid and not paid.written and vals.get("state") == "paid" and self.ids == [paid.id]:
            vals, paid.written = {**vals, **paid.vals}, True
        if "qimen_bill_code" in vals:
            self.env["qimen.sync.job"]._check_bill_code_change(self, vals["qimen_bill_code"])
        res = super().write(vals)
        if vals.get("state") == "cancel" and not self.env.context.get("qimen_from_erp"):
            self._qimen_safely(self._qimen_on_cancel)
        return res

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

    def _prepare_refund_values(self, current_session):
        # a refund copies the POS reference, but it is not an order of the ERP
        return dict(super()._prepare_refund_values(current_session), qimen_bill_code=False)

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
