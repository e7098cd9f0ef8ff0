import json
import logging
import random
import threading
import time
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..const import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    BLOCKING_JOB_STATES,
    DISPATCH_BATCH,
    DISPATCH_SECONDS,
    EVENT_STATUS,
    STUCK_SENDING_MINUTES,
)
from ..qimen import QimenValidationError

_logger = logging.getLogger(__name__)


class QimenSyncJob(models.Model):
    """One order update to send to the ERP: an outbox record with explicit states.

    The parameters are a snapshot taken when the update happened, so the job survives
    its order (a cancelled draft that the POS deletes) and sends what was true then.
    """

    _name = "qimen.sync.job"
    _description = "Qimen ERP Sync Job"
    _order = "id desc"

    name = fields.Char(compute="_compute_name")
    company_id = fields.Many2one("res.company", required=True, index=True, readonly=True)
    order_id = fields.Many2one("pos.order", index=True, ondelete="set null", readonly=True)
    config_id = fields.Many2one("pos.config", string="Shop", ondelete="set null", readonly=True)
    bill_code = fields.Char(required=True, index=True, readonly=True)
    event = fields.Selection(
        [
            ("confirm", "Paid"),
            ("pickup", "Picked up"),
            ("void", "Voided"),
            ("complete", "Completed"),
        ],
        required=True,
        readonly=True,
    )
    status = fields.Char(compute="_compute_status", store=True, help="Qimen status sent")
    payload = fields.Json("Parameters", readonly=True, help="Business parameters to send")
    state = fields.Selection(
        [
            ("pending", "Pending"),
            ("sending", "Sending"),
            ("failed", "Failed, will retry"),
            ("done", "Done"),
            ("dead", "Dead"),
            ("superseded", "Superseded"),
            ("cancelled", "Cancelled"),
        ],
        default="pending",
        required=True,
        index=True,
        readonly=True,
    )
    attempts = fields.Integer(readonly=True)
    next_attempt = fields.Datetime(default=fields.Datetime.now, index=True, readonly=True)
    sending_since = fields.Datetime(readonly=True)
    date_done = fields.Datetime("Sent On", readonly=True)
    last_error = fields.Text(readonly=True)
    last_code = fields.Char("Last Reply Code", readonly=True)
    last_request = fields.Json(
        "Request Data", readonly=True, help="Last request sent, signature masked"
    )
    last_reply = fields.Text(readonly=True)
    payload_text = fields.Text("Parameters Sent", compute="_compute_texts")
    last_request_text = fields.Text("Last Request", compute="_compute_texts")
    dead_notified = fields.Boolean(readonly=True, copy=False)

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

    @api.depends("event")
    def _compute_status(self):
        for job in self:
            job.status = EVENT_STATUS.get(job.event)

    # -- enqueueing (inside the POS transaction: cheap, no I/O) -------------------------
    @api.model
    def _enqueue(self, order, event, payload):
        """Queue ``payload`` for ``order``, unless the same update is already queued.

        A void carries the whole state of the order, so it supersedes the updates of that
        order that have not gone out yet."""
        jobs = self.sudo()
        key = [
            ("company_id", "=", order.company_id.id),
            ("bill_code", "=", payload["orderBillCode"]),
        ]
        if jobs.search_count(
            [*key, ("event", "=", event), ("state", "not in", ("superseded", "cancelled"))], limit=1
        ):
            return jobs
        if event == "void":
            jobs.search([*key, ("state", "in", ("pending", "failed", "dead"))]).write(
                {"state": "superseded", "next_attempt": False}
            )
        job = jobs.create(
            {
                "company_id": order.company_id.id,
                "order_id": order.id,
                "config_id": order.config_id.id,
                "bill_code": payload["orderBillCode"],
                "event": event,
                "payload": payload,
            }
        )
        self._trigger_dispatch()
        return job

    def _trigger_dispatch(self):
        """Have the dispatcher run as soon as this transaction commits: one cron trigger
        per transaction however many jobs it queues (a session close queues hundreds).
        The trigger row commits or rolls back with the jobs, so look for this
        transaction's own row rather than keep a flag a savepoint rollback would miss."""
        cron = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch").sudo()
        mine = [("cron_id", "=", cron.id), ("create_date", "=", self.env.cr.now())]
        if not self.env["ir.cron.trigger"].sudo().search_count(mine, limit=1):
            cron._trigger()

    # -- dispatching --------------------------------------------------------------------
    @api.model
    def _cron_dispatch(self, batch_size=DISPATCH_BATCH, time_budget=DISPATCH_SECONDS):
        """Send due jobs one at a time until the batch or the time budget is used up (a
        cron worker is killed past limit_time_real); the cron calls again while jobs
        remain. Each job is marked sending and committed before its call, and its outcome
        committed after, so a crash leaves at most one job to reclaim."""
        self._reclaim_stuck()
        started, sent = time.monotonic(), 0
        while sent < batch_size and time.monotonic() - started < time_budget:
            job = self._lock_due()
            if not job:
                break
            job._mark_sending()
            self._commit()
            job._send_safely()
            self._commit()
            sent += 1
        remaining = len(self._due_ids())
        _logger.info("Qimen sync: sent %s jobs, %s due", sent, remaining)
        self.env["ir.cron"]._notify_progress(done=sent, remaining=remaining)
        return sent

    def _commit(self):
        """Commit between jobs so that each outcome is kept, except in tests."""
        if not getattr(threading.current_thread(), "testing", False):
            self.env.cr.commit()  # pylint: disable=invalid-commit

    def _due_query(self):
        """Due jobs with no earlier update of the same order still waiting; a company
        whose sync is disabled (or neutralized) sends nothing."""
        return SQL(
            """
            SELECT job.id FROM qimen_sync_job job
              JOIN res_company company ON company.id = job.company_id
             WHERE job.state IN ('pending', 'failed')
               AND company.qimen_enabled
               AND job.next_attempt <= %(now)s
               AND NOT EXISTS (
                   SELECT 1 FROM qimen_sync_job older
                    WHERE older.company_id = job.company_id
                      AND older.bill_code = job.bill_code
                      AND older.id < job.id
                      AND older.state IN %(blocking)s)
             ORDER BY job.id
            """,
            now=fields.Datetime.now(),
            blocking=BLOCKING_JOB_STATES,
        )

    def _due_ids(self):
        self.env.cr.execute(self._due_query())
        return [row[0] for row in self.env.cr.fetchall()]

    def _lock_due(self):
        """Lock the first due job, skipping those another worker holds."""
        self.flush_model()
        self.env.cr.execute(SQL("%s LIMIT 1 FOR UPDATE OF job SKIP LOCKED", self._due_query()))
        return self.browse([row[0] for row in self.env.cr.fetchall()])

    def _reclaim_stuck(self):
        """Jobs left 'sending' by a crashed worker go back to the queue."""
        limit = fields.Datetime.now() - timedelta(minutes=STUCK_SENDING_MINUTES)
        self.flush_model()
        self.env.cr.execute(
            SQL(
                "SELECT id FROM qimen_sync_job WHERE state = 'sending' AND sending_since < %s "
                "FOR UPDATE SKIP LOCKED",
                limit,
            )
        )
        stuck = self.browse([row[0] for row in self.env.cr.fetchall()])
        for job in stuck:
            job._record_outcome(
                transient=True,
                error=self.env._("Interrupted while sending (the worker stopped); sent again."),
            )
        return stuck

    def _mark_sending(self):
        now = fields.Datetime.now()
        for job in self:
            job.write({"state": "sending", "sending_since": now, "attempts": job.attempts + 1})

    def _send_safely(self):
        """Send this job; whatever happens, record it on the job and never raise."""
        self.ensure_one()
        try:
            with self.env.cr.savepoint():
                self._send()
        except Exception as exc:
            _logger.exception("Qimen sync: job %s failed unexpectedly", self.id)
            self._record_outcome(transient=True, error=self.env._("Unexpected error: %s", exc))

    def _send(self):
        """The network call of a job: the only place the dispatcher talks to the ERP."""
        company = self.company_id
        problems = company._qimen_config_problems()
        if problems:
            return self._record_outcome(
                transient=False,
                error=self.env._("Qimen sync is not configured: missing %s.", ", ".join(problems)),
            )
        try:
            result = company._qimen_client().salesorder_update(self.payload)
        except QimenValidationError as exc:
            return self._record_outcome(
                transient=False, error=self.env._("Invalid parameter %s", exc)
            )
        vals = {
            "last_request": result.request,
            "last_reply": result.reply_text,
            "last_code": result.code,
        }
        if result.ok:
            vals.update(
                state="done",
                date_done=fields.Datetime.now(),
                last_error=False,
                sending_since=False,
                next_attempt=False,
            )
            return self.write(vals)
        return self._record_outcome(result.transient, result.describe(), vals)

    def _record_outcome(self, transient, error, vals=None):
        """A failed attempt: retry later with backoff, or give up (dead)."""
        vals = dict(vals or {}, last_error=error, sending_since=False)
        max_attempts = self.company_id.qimen_max_attempts or 1
        if transient and self.attempts < max_attempts:
            delay = min(BACKOFF_BASE_SECONDS * 2 ** max(self.attempts - 1, 0), BACKOFF_MAX_SECONDS)
            delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
            at = fields.Datetime.now() + timedelta(seconds=delay)
            vals.update(state="failed", next_attempt=at)
            self.write(vals)
            self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch").sudo()._trigger(at)
        else:
            vals.update(state="dead", next_attempt=False)
            self.write(vals)
            self._notify_dead()
        _logger.warning(
            "Qimen sync: job %s (%s) %s: %s", self.id, self.bill_code, vals["state"], error
        )
        return True

    def _notify_dead(self):
        """Tell the order's followers and a POS manager, once per job."""
        for job in self.filtered(lambda j: j.order_id and not j.dead_notified):
            order = job.order_id
            order.message_post(
                body=self.env._(
                    "The ERP update %(job)s could not be sent: %(error)s",
                    job=job.name,
                    error=job.last_error,
                ),
                author_id=self.env.ref("base.partner_root").id,
            )
            order._qimen_ask_manager(
                self.env._("ERP sync failed: fix and retry"),
                self.env._("%(job)s: %(error)s", job=job.name, error=job.last_error),
            )
            job.dead_notified = True

    # -- actions --------------------------------------------------------------------
    def _check_not_superseded_by_newer(self):
        """An update is not sent again once a newer one of the same order went out, or is
        going out: each update carries the whole state of the order."""
        for job in self:
            newer_out = self.search_count(
                [
                    ("company_id", "=", job.company_id.id),
                    ("bill_code", "=", job.bill_code),
                    ("id", ">", job.id),
                    ("state", "in", ("done", "sending")),
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
        disabled = self.company_id.filtered(lambda c: not c.qimen_enabled)
        if disabled:
            raise UserError(
                self.env._("Qimen sync is disabled for %s.", ", ".join(disabled.mapped("name")))
            )
        jobs = self.filtered(lambda j: j.state in ("failed", "dead", "cancelled"))
        jobs = jobs._check_not_superseded_by_newer()
        jobs.write(
            {
                "state": "pending",
                "attempts": 0,
                "next_attempt": fields.Datetime.now(),
                "last_error": False,
            }
        )
        for job in jobs:
            job._refresh_routing()
        if self.filtered(lambda j: j.state == "pending"):
            self._trigger_dispatch()
        return True

    def action_cancel(self):
        self.filtered(lambda j: j.state in ("pending", "failed", "dead")).write(
            {"state": "cancelled", "next_attempt": False}
        )
        return True

    def _refresh_routing(self):
        """After a configuration fix, a retried job uses the shop's current customerid."""
        for job in self:
            customerid = (
                job.config_id._qimen_customerid()
                if job.config_id
                else (job.company_id.qimen_customerid or "")
            )
            if customerid and job.payload and job.payload.get("customerid") != customerid:
                job.payload = dict(job.payload, customerid=customerid)
