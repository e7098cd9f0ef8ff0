import functools
import json
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL

from .. import payload
from ..const import (
    FAILURE_KINDS,
    FINISHED_JOB_STATES,
    GC_BATCH,
    GC_SECONDS,
    JOB_EVENT_SELECTION,
    JOB_STATE_SELECTION,
    RESEND_EVENT,
)
from ..dispatch.queue_sql import delete_in_batches
from ..dispatch.waker import CRON_WAKER
from ..sync_rules import queued_state

_logger = logging.getLogger(__name__)

# A transaction's marks (cursor pre/post-commit data): a dispatch trigger is to be
# inserted at the commit; a trigger for now is in, and the crons are woken after it.
TRIGGER_KEY = "pos_qimen_sync.trigger"
WAKE_KEY = "pos_qimen_sync.wake"
# Whether an update of the row's order is dead (the queueing INSERT's RETURNING).
DEAD_UPDATE_SQL = SQL(
    """EXISTS (SELECT 1 FROM qimen_sync_job dead
                WHERE dead.order_id = qimen_sync_job.order_id AND dead.state = 'dead')"""
)


def trigger_sql(crons, at, uid, now, condition=None):
    """SQL: the dispatcher's crons ``crons`` (ids) to run ``at``: a trigger row for each
    active one, none for a later time already asked (and none unless ``condition``)."""
    return SQL(
        """INSERT INTO ir_cron_trigger
                  (cron_id, call_at, create_uid, create_date, write_uid, write_date)
           SELECT cron.id, %(at)s, %(uid)s, %(now)s, %(uid)s, %(now)s
             FROM ir_cron cron
            WHERE cron.id IN %(crons)s AND cron.active AND %(condition)s
              AND (%(at)s <= %(now)s OR NOT EXISTS (
                  SELECT 1 FROM ir_cron_trigger
                   WHERE cron_id = cron.id AND call_at = %(at)s))""",
        crons=crons,
        at=at,
        uid=uid,
        now=now,
        condition=condition or SQL("TRUE"),
    )


# Only the dispatcher and the actions move these; never a user through write() (RPC).
PROTECTED_FIELDS = frozenset(
    {
        "company_id",
        "order_id",
        "config_id",
        "bill_code",
        "event",
        "payload",
        "state",
        "attempts",
        "next_attempt",
        "sending_since",
        "lease_until",
        "date_done",
        "last_error",
        "last_code",
        "failure_kind",
        "last_request",
        "last_reply",
        "dead_notified",
    }
)


class QimenSyncJob(models.Model):
    """One order update to send to the ERP: an outbox record with explicit states.

    The parameters are a snapshot taken when the update happened, so the job survives
    its order (a cancelled draft that the POS deletes) and sends what was true then.
    The dispatcher writes jobs only, never the orders: the till writes those.
    """

    _name = "qimen.sync.job"
    _description = "Qimen ERP Sync Job"
    _order = "id desc"

    name = fields.Char(compute="_compute_name")
    # no index of its own: company_id leads the partial indexes below (every index
    # costs each state change of a job, and there are two per update sent)
    company_id = fields.Many2one("res.company", required=True, readonly=True)
    order_id = fields.Many2one("pos.order", index=True, ondelete="set null", readonly=True)
    config_id = fields.Many2one("pos.config", string="Shop", ondelete="set null", readonly=True)
    bill_code = fields.Char(required=True, readonly=True)  # indexed with company_id, below
    event = fields.Selection(JOB_EVENT_SELECTION, required=True, readonly=True)
    # the payload's: a resend sends the status of the order's state, not one of its own
    status = fields.Char(
        "Status Sent", compute="_compute_status", store=True, help="Qimen status sent"
    )
    payload = fields.Json("Parameters", readonly=True, help="Business parameters to send")
    state = fields.Selection(
        JOB_STATE_SELECTION,
        default="pending",
        required=True,
        readonly=True,  # searched through the partial indexes of the states that wait
    )
    attempts = fields.Integer(readonly=True)
    next_attempt = fields.Datetime(default=fields.Datetime.now, readonly=True)
    sending_since = fields.Datetime(readonly=True)
    lease_until = fields.Datetime(
        "Sending Deadline",
        readonly=True,
        help="A job still sending after this moment lost its sender: it is sent again.",
    )
    date_done = fields.Datetime("Acknowledged On", readonly=True)
    last_error = fields.Text(readonly=True)
    last_code = fields.Char("Last Reply Code", readonly=True)
    failure_kind = fields.Selection(
        FAILURE_KINDS,
        "Last Failure Kind",
        readonly=True,
        help="Whose the last failure was: the company's (gateway, credentials, settings) "
        "or the order's own.",
    )
    last_request = fields.Json(
        "Request Data",
        readonly=True,
        help="System parameters of the last request sent, signature masked (its business "
        "parameters are the job's).",
    )
    last_reply = fields.Text(readonly=True)
    payload_text = fields.Text("Parameters Sent", compute="_compute_texts")
    last_request_text = fields.Text("Last Request", compute="_compute_texts")
    dead_notified = fields.Boolean(readonly=True, copy=False)

    def init(self):
        """Partial indexes keep the dispatcher's scans flat however many finished jobs the
        table holds, and the unique one makes queueing the same update twice a no-op: a
        resend too while one waits, but not once it was acknowledged (the ERP may lose
        what it received again)."""
        for name, definition in (
            ("qimen_sync_job_due_idx", "(id) WHERE state IN ('pending', 'failed')"),
            (
                "qimen_sync_job_waiting_idx",
                "(company_id, bill_code, id) WHERE state IN ('pending', 'sending', 'failed', "
                "'dead')",
            ),
            ("qimen_sync_job_sending_idx", "(lease_until) WHERE state = 'sending'"),
            (
                "qimen_sync_job_finished_idx",
                "(write_date) WHERE state IN ('done', 'superseded', 'cancelled')",
            ),
            # each shop's last acknowledgement for the POS dashboard, one index step per
            # shop however many done jobs there are. Its write cost: one entry per job
            # acknowledged, in the UPDATE that makes it done, which already writes a new
            # entry in every other index (a state change is never a HOT update: the state
            # is in the partial indexes' predicates); the claims and failures, the
            # sender's other writes, do not touch it. Deriving it from the health row
            # instead would have every lane write that one row per call.
            ("qimen_sync_job_done_idx", "(config_id, date_done) WHERE state = 'done'"),
        ):
            self.env.cr.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS %s ON qimen_sync_job %s",
                    SQL.identifier(name),
                    SQL(definition),
                )
            )
        self.env.cr.execute(
            SQL(
                "CREATE UNIQUE INDEX IF NOT EXISTS qimen_sync_job_live_update_uniq "
                "ON qimen_sync_job (company_id, bill_code, event) "
                "WHERE state NOT IN ('superseded', 'cancelled') "
                "AND NOT (event = %s AND state = 'done')",
                RESEND_EVENT,
            )
        )

    @api.depends("bill_code", "event")
    def _compute_name(self):
        labels = dict(self._fields["event"]._description_selection(self.env))
        for job in self:
            job.name = f"{job.bill_code} / {labels.get(job.event, '')}"

    @api.depends("payload", "last_request")
    def _compute_texts(self):
        for job in self:
            job.payload_text = json.dumps(job.payload or {}, ensure_ascii=False, indent=2)
            job.last_request_text = (
                json.dumps(job.last_request, ensure_ascii=False, indent=2)
                if job.last_request
                else False
            )

    @api.depends("payload")
    def _compute_status(self):
        for job in self:
            job.status = (job.payload or {}).get("status")

    def write(self, vals):
        """Jobs move through their actions only (as OCA queue_job protects its jobs): a
        user, even a POS manager over RPC, cannot rewrite what is sent or its state."""
        if not self.env.su and PROTECTED_FIELDS.intersection(vals):
            raise AccessError(
                self.env._("Sync jobs are changed by their actions only (Retry, Cancel).")
            )
        return super().write(vals)

    # -- actions --------------------------------------------------------------------
    def _check_not_superseded_by_newer(self):
        """An update is not sent again once a newer one of the same order went out, or is
        going out: each update carries the whole state of the order. Nor while a newer
        one of the same event waits (a resend queued after this one was cancelled): that
        one says as much, and the unique index would refuse this one back."""
        for job in self:
            newer_out = self.search_count(
                [
                    ("company_id", "=", job.company_id.id),
                    ("bill_code", "=", job.bill_code),
                    ("id", ">", job.id),
                    "|",
                    ("state", "in", ("done", "sending")),
                    "&",
                    ("event", "=", job.event),
                    ("state", "in", ("pending", "failed", "dead")),
                ],
                limit=1,
            )
            if newer_out:
                job.write({"state": "superseded", "next_attempt": False})
        return self.filtered(lambda j: j.state != "superseded")

    def action_retry(self):
        """Queue failed, dead or cancelled jobs again with a fresh attempt budget, and have
        the dispatcher send them right after this transaction: the same path as the cron,
        so a job the cron is sending is never sent twice."""
        self.check_access("write")
        disabled = self.company_id.filtered(lambda c: not c.qimen_enabled)
        if disabled:
            raise UserError(
                self.env._("Qimen sync is disabled for %s.", ", ".join(disabled.mapped("name")))
            )
        retryable = self.filtered(lambda j: j.state in ("failed", "dead", "cancelled"))
        self._refuse_if_none(
            retryable, self.env._("Only failed, dead or cancelled updates can be retried.")
        )
        queued = retryable.sudo()._check_not_superseded_by_newer()
        queued.write(
            {
                "state": "pending",
                "attempts": 0,
                "next_attempt": fields.Datetime.now(),
                "last_error": False,
            }
        )
        queued._refresh_routing()
        if queued:
            self._trigger_dispatch()
        return self._notice_left_alone(self - queued.with_env(self.env))

    def action_cancel(self):
        """Skip updates that wait (an operator's decision); later ones of the order go."""
        self.check_access("write")
        cancellable = self.filtered(lambda j: j.state in ("pending", "failed", "dead"))
        self._refuse_if_none(
            cancellable, self.env._("Only pending, failed or dead updates can be cancelled.")
        )
        cancellable.sudo().write({"state": "cancelled", "next_attempt": False})
        self.env["qimen.sync.health"].sudo()._close_resolved_dead_summaries()
        return self._notice_left_alone(self - cancellable)

    def _describe_states(self):
        labels = dict(self._fields["state"]._description_selection(self.env))
        names = [f"{job.name} ({labels[job.state]})" for job in self[:10]]
        return ", ".join(names) + (" …" if len(self) > 10 else "")

    def _refuse_if_none(self, applicable, why):
        if not applicable:
            raise UserError(self.env._("%(why)s\n%(jobs)s", why=why, jobs=self._describe_states()))

    def _notice_left_alone(self, left):
        """Say which jobs an action left as they are (done, sending, superseded…)."""
        if not left:
            return {"type": "ir.actions.client", "tag": "soft_reload"}
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Some updates were left as they are"),
                "message": left._describe_states(),
                "type": "warning",
                "sticky": True,
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def _refresh_routing(self):
        """After a configuration fix, a retried job uses the shop's current customerid."""
        for job in self:
            customerid = (
                job.config_id._qimen_customerid()
                if job.config_id
                else (job.company_id.qimen_customerid or "")
            )
            if customerid:
                payload.rewrite(job, customerid=customerid)

    # -- the bill code lock -----------------------------------------------------------
    @api.model
    def _check_bill_code_change(self, orders, new_code):
        """The ERP knows an order by its bill code: once an update went out, changing the
        code would make it a new order in the ERP. Before, the code may change, and the
        updates queued with the old one are queued again with the new one."""
        changing = orders.filtered(lambda o: o.qimen_bill_code and o.qimen_bill_code != new_code)
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
        self._check_bill_code_free(changing, new_code)
        if jobs:
            self._rekey(jobs, new_code)

    @api.model
    def _check_bill_code_free(self, order, code):
        """Two orders of a company with one bill code would be one order in the ERP."""
        order.ensure_one()
        company = order.company_id
        other = order.sudo().search(
            [
                ("company_id", "=", company.id),
                ("qimen_bill_code", "=", code),
                ("id", "!=", order.id),
            ],
            limit=1,
        )
        used_by_jobs = self.sudo().search_count(
            [
                ("company_id", "=", company.id),
                ("bill_code", "=", code),
                ("order_id", "!=", order.id),
            ],
            limit=1,
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
    def _rekey(self, jobs, code):
        """Queued updates that never went out are sent with the new bill code. The rows
        are locked first: a sender skips them until this transaction ends, and one that
        claimed a job since this transaction began makes the lock fail with a
        serialization error, which Odoo retries from the start (the change is then
        refused, since the update went out)."""
        self.env.flush_all()
        self.env.cr.execute(
            SQL("SELECT id FROM qimen_sync_job WHERE id IN %s FOR UPDATE", tuple(jobs.ids))
        )
        payload.rewrite(jobs.sudo(), orderBillCode=code)

    # -- enqueueing (inside the POS transaction: cheap, no I/O) -------------------------
    @api.model
    def _enqueue(self, updates):
        """Queue ``updates``, a list of ``(order, event, payload)``, in one INSERT.

        An update already queued (same company, bill code and event, not superseded or
        cancelled, nor an acknowledged resend) is skipped by a unique index. A void
        carries the whole state of its order, so it supersedes the updates of that order
        that have not gone out yet."""
        if not updates:
            return self.browse()
        self.flush_model()  # the index decides on the rows as this transaction left them
        cr, now, uid = self.env.cr, fields.Datetime.now(), self.env.uid
        # whether an update of the order is dead: not asked of orders the cache knows
        # have no job (the till's, created in this request), a subquery's planning saved
        job_ids = self.env["pos.order"]._fields["qimen_job_ids"]
        jobless = all(
            self.env.cache.contains(order, job_ids) and not self.env.cache.get(order, job_ids)
            for order, _event, _params in updates
        )
        dead_sql = SQL("false") if jobless else DEAD_UPDATE_SQL
        # the dispatcher's trigger goes in the same statement, when this transaction
        # holds none yet (see _trigger_dispatch): a round trip less for the till
        crons = () if WAKE_KEY in cr.postcommit.data else self._dispatch_cron_ids()
        if crons:
            self.env["ir.cron"].flush_model(["active"])
        rows = [
            (
                order.company_id.id,
                order.id,
                order.config_id.id or None,
                params["orderBillCode"],
                event,
                params["status"],
                json.dumps(params),
            )
            for order, event, params in updates
        ]
        insert = SQL(  # one array per column, whatever the number of rows; ids in order
            """INSERT INTO qimen_sync_job
                       (company_id, order_id, config_id, bill_code, event, status, payload,
                        state, attempts, next_attempt, dead_notified,
                        create_uid, create_date, write_uid, write_date)
                   SELECT company_id, order_id, config_id, bill_code, event, status, payload,
                          'pending', 0, %s, false, %s, %s, %s, %s
                     FROM unnest(%s::int[], %s::int[], %s::int[], %s::varchar[],
                                 %s::varchar[], %s::varchar[], %s::jsonb[])
                          WITH ORDINALITY AS u(company_id, order_id, config_id, bill_code,
                                               event, status, payload, rank)
                    ORDER BY rank
                   ON CONFLICT DO NOTHING
                   RETURNING id, company_id, bill_code, event, order_id, %s""",
            now,
            uid,
            now,
            uid,
            now,
            *(list(column) for column in zip(*rows, strict=True)),
            dead_sql,
        )
        if crons:
            trigger = trigger_sql(crons, now, uid, now, SQL("EXISTS (SELECT FROM jobs)"))
            insert = SQL("WITH jobs AS (%s), wake AS (%s) SELECT * FROM jobs", insert, trigger)
        cr.execute(insert)
        inserted = cr.fetchall()
        if inserted and crons:
            self._wake_after_commit()
        jobs = self.browse([row[0] for row in inserted])
        voided = {(company, bill) for _id, company, bill, event, *_o in inserted if event == "void"}
        if voided:
            cr.execute(
                SQL(
                    """UPDATE qimen_sync_job SET state = 'superseded', next_attempt = NULL,
                              write_uid = %s, write_date = %s
                        WHERE (company_id, bill_code) IN %s AND id NOT IN %s
                          AND state IN ('pending', 'failed', 'dead')""",
                    uid,
                    now,
                    tuple(voided),
                    tuple(jobs.ids),
                )
            )
        orders = self.env["pos.order"].concat(*(order for order, _e, _p in updates))
        self.invalidate_model()
        orders.invalidate_recordset(["qimen_job_ids"])
        orders.modified(["qimen_job_ids"])
        # the till reads the sync state of the orders it pays: known now, without a query
        # (a void's supersedes may have ended a dead update: that order is read)
        states = {
            order_id: queued_state(dead)
            for _id, company, bill, _event, order_id, dead in inserted
            if order_id and (company, bill) not in voided
        }
        Order = self.env["pos.order"]
        self.env.cache.update(
            Order.browse(states), Order._fields["qimen_sync_state"], states.values()
        )
        if jobs and not crons:
            self._trigger_dispatch()
        return jobs

    def _trigger_dispatch(self):
        """Have the dispatcher run as soon as this transaction commits: one cron trigger
        per transaction however many jobs it queues (the till's first queueing INSERT
        makes it in the same statement, see :meth:`_enqueue`; other work, with a
        precommit hook). The hook runs at the commit, and at every flushing savepoint
        before it (a till's picking opens one per order): once this transaction holds a
        trigger for now, the jobs queued after it need none (a rollback to an enclosing
        savepoint that removed it would leave them to the cron's own schedule)."""
        cr = self.env.cr
        if WAKE_KEY in cr.postcommit.data:  # a trigger for now is in
            return
        if TRIGGER_KEY not in cr.precommit.data:
            cr.precommit.data[TRIGGER_KEY] = True
            cr.precommit.add(self._create_dispatch_trigger)

    def _create_dispatch_trigger(self, at=None):
        """Have the dispatcher's crons (see qimen_dispatch_runs) run ``at`` (default:
        now). The trigger rows are one INSERT (the ORM's create costs the cashier a
        millisecond); the cron threads are woken after the commit by :data:`CRON_WAKER`,
        off the committing request."""
        crons = self._dispatch_cron_ids()
        if not crons:  # deleted by hand: nothing to run
            return
        now = fields.Datetime.now()
        at = at or now
        self.env["ir.cron"].flush_model(["active"])
        # not for an inactive cron, nor twice for a later time
        self.env.cr.execute(trigger_sql(crons, at, self.env.uid, now))
        if at <= now:
            self._wake_after_commit()

    def _wake_after_commit(self):
        """A trigger for now is in this transaction: wake the cron threads once it
        commits (once per transaction)."""
        postcommit = self.env.cr.postcommit
        if WAKE_KEY not in postcommit.data:
            postcommit.data[WAKE_KEY] = True
            postcommit.add(functools.partial(CRON_WAKER.wake, self.env.cr.dbname))

    def _notify_dead(self):
        """Tell the order's readers (in the company's language), once per job, and the
        company's POS managers in one summary to-do an hour (qimen.sync.health)."""
        dead = self.filtered(lambda j: not j.dead_notified)
        for job in dead.filtered("order_id"):
            order = job.order_id._qimen_for_readers()
            order.message_post(
                body=order.env._(
                    "The ERP update %(job)s could not be sent: %(error)s",
                    job=job.with_env(order.env).name,
                    error=job.last_error,
                ),
                author_id=self.env.ref("base.partner_root").id,
            )
        if dead:
            self.env["qimen.sync.health"]._note_dead(dead)
            dead.dead_notified = True

    # -- housekeeping -------------------------------------------------------------------
    @api.autovacuum
    def _gc_finished_jobs(self, commit=True):
        """Delete finished jobs (acknowledged, superseded, cancelled) older than the
        retention period, in bounded batches committed one by one (as OCA queue_job
        does), along a partial index: flat however many millions the table holds.
        ``commit=False``: for a caller that owns its transaction (a test)."""
        days = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("pos_qimen_sync.job_retention_days", "30")
        )
        try:
            days = max(int(days), 1)
        except ValueError:
            days = 30
        before = fields.Datetime.now() - timedelta(days=days)
        deleted = delete_in_batches(
            self.env.cr,
            SQL.identifier(self._table),
            SQL("state IN %s AND write_date < %s", FINISHED_JOB_STATES, before),
            GC_BATCH,
            GC_SECONDS,
            commit=commit,
        )
        self.invalidate_model()
        _logger.info("Qimen sync: deleted %s finished jobs older than %s days", deleted, days)
        return deleted
