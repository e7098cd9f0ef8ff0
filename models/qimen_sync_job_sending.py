"""How ``qimen.sync.job`` rows are sent: the ORM side of the dispatcher (see
``dispatch/``): the cron's run, a claim's company client and payload, an outcome, the
retry policy. The SQL and the threads live in the ``dispatch`` package."""

import logging
import random
import time
from datetime import timedelta

from psycopg2.extras import Json

from odoo import api, fields, models
from odoo.tools import SQL

from ..const import (
    LEASE_MARGIN_SECONDS,
    PROBE_MAX_SECONDS,
    RETRY_BASE_SECONDS,
    RETRY_MAX_SECONDS,
)
from ..dispatch import budget
from ..dispatch.lanes import (
    Claim,
    CommittedTransactions,
    EnclosingTransaction,
    Lane,
    run_lanes,
)
from ..dispatch.queue_sql import (
    NEXT_WAKE_QUERY,
    Unprepared,
    claim_query,
    done_and_claim_query,
    done_query,
    due_query,
    expired_query,
    held_query,
    probe_query,
)
from ..qimen import QimenValidationError, SendResult
from ..qimen.health import ORDER, SYSTEMIC_KINDS, failure_kind
from ..qimen.request import build_salesorder_update
from ..qimen.responses import PERMANENT
from ..qimen.text import storable
from .qimen_sync_health import CONFIGURATION

_logger = logging.getLogger(__name__)


def _failure_kind(claim, result):
    """What failed (qimen/health.py): the company's settings, or a bug of ours (the
    order's own), else as the reply says."""
    if claim.company_problem:
        return CONFIGURATION
    if claim.crashed:
        return ORDER
    return failure_kind(result)


def _sent_query(result):
    """What a job keeps of its request: the system parameters, signature masked (its
    business parameters are the job's payload, and a row stays small)."""
    return {"query": result.request["query"]} if result.request else None


# done_query's argument types, and its arguments for a claim's success
DONE_TYPES = ("integer", "timestamp", "timestamp", "jsonb", "text", "varchar")


def _done_args(claim, result):
    return (
        claim.job_id,
        claim.lease_until,
        fields.Datetime.now(),
        Json(_sent_query(result)) if result.request else None,
        storable(result.reply_text) or None,
        storable(result.code) or None,
    )


class QimenSyncJob(models.Model):
    _inherit = "qimen.sync.job"

    # -- the cron's run ---------------------------------------------------------------
    @api.model
    def _cron_dispatch(self):
        """Send due jobs on parallel lanes until the run's time budget is used up."""
        return self._dispatch()

    @api.model
    def _dispatch(self, inline=False):
        """Send due jobs until none is due or the run's time budget is used up.

        Each lane has its own cursor and takes one due job at a time (``SKIP LOCKED``),
        so several workers or servers can dispatch at once; an order's updates still go
        out one after the other. The budget covers the whole cron run (see
        ``dispatch/budget.py``); when work remains, a fresh run is triggered instead.

        ``inline``: one lane on this cursor, committing nothing, for a caller that owns
        its transaction (a test, an ``odoo shell``): the cron's lanes could not see what
        it has not committed."""
        self._reclaim_expired()
        lease = self._lease_seconds()
        probes = self.env["qimen.sync.health"]._probes_due()
        run_end = budget.run_deadline()
        if run_end is None:  # a prefork worker that loaded the addon during this pass
            self._create_dispatch_trigger()  # the next pass knows its time limit
            _logger.info("Qimen sync: time limit unknown in this pass; a fresh run is asked")
            return 0
        claim_until = budget.claim_deadline(run_end, lease)
        jobs = self.sudo()
        if inline:
            transactions = EnclosingTransaction(jobs.env)
        else:
            self.env.cr.commit()  # pylint: disable=invalid-commit
            transactions = CommittedTransactions(jobs.env)
        sent = sum(jobs._probe(company_id, lease, transactions) for company_id in probes)
        if inline:
            sent += Lane(jobs, transactions).run(claim_until, lease)
        else:
            sent += run_lanes(self.pool, self._lane_count(), claim_until, run_end, lease)
        health = self.env["qimen.sync.health"]
        transactions.run(health._close_drained_alerts)
        transactions.run(health._close_resolved_dead_summaries)
        remaining = len(self._due_ids(limit=1))
        if remaining:
            self._create_dispatch_trigger()  # a fresh run, with a fresh time budget
        self._trigger_next_retry()
        _logger.info("Qimen sync: sent %s updates%s", sent, ", more due" if remaining else "")
        # no "remaining": Odoo would call again at once, within this run's time limit
        self.env["ir.cron"]._notify_progress(done=sent, remaining=0)
        return sent

    @api.model
    def _run_lanes(self, claim_until, run_end, lanes, lease=None):
        """Run ``lanes`` lanes on threads of their own (committed transactions)."""
        lease = lease or self._lease_seconds()
        return run_lanes(self.pool, lanes, claim_until, run_end, lease)

    def _transaction(self, work, tries=10, read_committed=False):
        """Run ``work`` in a transaction of its own, committed, conflicts retried."""
        return CommittedTransactions(self.env, read_committed, tries).run(work)

    def _due_ids(self, limit=None):
        self.env.flush_all()
        query = due_query(fields.Datetime.now())
        if limit:
            query = SQL("%s LIMIT %s", query, limit)
        self.env.cr.execute(query)
        return [row[0] for row in self.env.cr.fetchall()]

    def _probe(self, company_id, lease, transactions):
        """One call for a paused company (its probe was taken by ``_probes_due``): its
        oldest waiting update. The outcome resumes sending, or makes the next probe wait
        longer (see qimen.sync.health); return 1 when the update went through."""
        claim = transactions.run(lambda: self._claim_probe(company_id, lease))
        if not claim:  # nothing waits: nothing to pause for
            health = self.env["qimen.sync.health"]
            transactions.run(lambda: health._locked(company_id)._resume("call"))
            return 0
        result = claim.send()
        transactions.run(lambda: self._record(claim, result))
        return int(result.ok)

    def _claim_probe(self, company_id, lease):
        self.env.flush_all()
        now = fields.Datetime.now()
        self.env.cr.execute(claim_query(now, lease, probe_query(company_id)))
        claim = self._claim_from(self.env.cr.fetchone(), None)
        if claim:
            claim.probe = True
        return claim

    # -- a claim ----------------------------------------------------------------------
    @api.model
    def _claim_next(self, claim_until, lane=None, lease=None):
        """Take the oldest due job that no other lane holds, mark it sending with a lease
        of ``lease`` seconds (the longest its call can take), and return a
        :class:`~..dispatch.lanes.Claim`, or None. One statement, prepared once per
        ``lane``, which also keeps each company's client between its claims."""
        if time.time() >= claim_until:
            return None
        lease = lease or self._lease_seconds()
        self.env.flush_all()
        statements = lane.statements if lane else Unprepared()
        statements.execute(
            self.env.cr,
            "qimen_claim",
            ("timestamp", "float"),
            claim_query,
            fields.Datetime.now(),
            float(lease),
        )
        return self._claim_from(self.env.cr.fetchone(), lane)

    def _claim_from(self, row, lane):
        """The :class:`Claim` of a claimed row (None when nothing was claimed)."""
        if not row or row[0] is None:
            return None
        job_id, lease_until, bill_code, payload, company_id, settings_version, unwell = row
        claim = Claim(job_id, lease_until, bill_code, company_id, company_unwell=unwell)
        senders = lane.senders if lane else {}
        sender = senders.get(company_id)
        if not sender or sender[0] != settings_version:  # settings changed: read them again
            sender = (settings_version, *self._sender(self.env["res.company"].browse(company_id)))
            senders[company_id] = sender
        _version, claim.client, problem = sender
        if problem:
            claim.result = SendResult(PERMANENT, message=problem)
            claim.company_problem = True
            return claim
        try:
            claim.params = build_salesorder_update(payload or {})
        except QimenValidationError as exc:
            claim.result = SendResult(PERMANENT, message=self.env._("Invalid parameter %s", exc))
        return claim

    @api.model
    def _sender(self, company):
        """``(client, problem)``: the company's protocol client, or why it cannot send."""
        problems = company._qimen_config_problems()
        if problems:
            return None, self.env._(
                "Qimen sync is not configured: missing %s.", ", ".join(problems)
            )
        return company._qimen_client(), None

    # -- an outcome -------------------------------------------------------------------
    def _record(self, claim, result, lane=None):
        """Record the outcome of a claim, unless the job was taken back meanwhile (its
        lease ran out): a late outcome must not overwrite a newer attempt. A success is
        one statement; a failure goes through the ORM (backoff, notices)."""
        statements = lane.statements if lane else Unprepared()
        if result.ok:
            statements.execute(
                self.env.cr, "qimen_done", DONE_TYPES, done_query, *_done_args(claim, result)
            )
        else:
            self.env.cr.execute(held_query(claim.job_id, claim.lease_until), log_exceptions=False)
        if not self.env.cr.fetchone():
            self._log_taken_back(claim, result)
            return
        kind = _failure_kind(claim, result)
        health = self.env["qimen.sync.health"]
        answered = bool(result.http_status) and not claim.crashed
        if kind in (None, ORDER) and claim.company_unwell and answered:
            # the gateway answered and took our credentials: the company is well (a job
            # refused before its call, or a bug of ours, tells nothing of the gateway)
            health._locked(claim.company_id)._heal()
        if result.ok:
            return
        reply, code = storable(result.reply_text) or None, storable(result.code) or None
        vals = {
            "last_request": _sent_query(result) or False,
            "last_reply": reply or False,
            "last_code": code or False,
            "failure_kind": kind,
        }
        error = storable(result.describe())
        if claim.crashed:
            error = self.env._("Unexpected error: %s", error)
        job = self.browse(claim.job_id)
        retry_at = health._note_failure(job, kind, error, probe=claim.probe)
        if retry_at:  # the company's failure, not the job's: its attempt is given back
            vals.update(last_error=error, sending_since=False, lease_until=False)
            job.write(dict(vals, state="failed", attempts=job.attempts - 1, next_attempt=retry_at))
            return
        # the company's kind of failure, below the breaker's threshold: retried, and it
        # kills the update only once the company's other orders got through meanwhile
        # (then it is this order's)
        job._record_failure(
            result.transient or kind != ORDER, error, vals, systemic=kind in SYSTEMIC_KINDS
        )

    def _record_done_and_claim(self, claim, result, lane, lease):
        """Record a success and take the next due job, in one statement (see
        :func:`~..dispatch.queue_sql.done_and_claim_query`); return the next
        :class:`Claim`, or None when none was due in it. For a company in good health:
        the outcome leaves its health as it is."""
        self.env.flush_all()
        lane.statements.execute(
            self.env.cr,
            "qimen_done_claim",
            (*DONE_TYPES, "float"),
            done_and_claim_query,
            *_done_args(claim, result),
            float(lease),
        )
        recorded, *row = self.env.cr.fetchone()
        if recorded is None:
            self._log_taken_back(claim, result)
        return self._claim_from(row, lane)

    def _log_taken_back(self, claim, result):
        _logger.warning(
            "Qimen sync: job %s was taken back while its call ran; outcome dropped: %s",
            claim.job_id,
            result.describe(),
        )

    def _record_failure(self, transient, error, vals=None, systemic=False):
        """A failed attempt: retry later with backoff, or give up (dead).

        ``systemic``: the failure was of the company's kind (no answer, a gateway error,
        credentials refused) without pausing the company (too few orders wait to tell,
        as in a quiet shop at night). Such an update does not die of it while none of
        the company's updates got through since it was queued: it is retried at most
        every ``PROBE_MAX_SECONDS``, as a paused company's probe would be."""
        vals = dict(vals or {}, last_error=error, sending_since=False, lease_until=False)
        for job in self:
            max_attempts = job.company_id.qimen_max_attempts or 1
            base = self._retry_base_seconds()
            delay = min(base * 2 ** max(job.attempts - 1, 0), RETRY_MAX_SECONDS)
            delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
            if transient and job.attempts < max_attempts:
                at = fields.Datetime.now() + timedelta(seconds=delay)
                job.write(dict(vals, state="failed", next_attempt=at))
            elif transient and systemic and not job._company_got_through():
                at = fields.Datetime.now() + timedelta(seconds=min(delay, PROBE_MAX_SECONDS))
                job.write(dict(vals, state="failed", next_attempt=at))
            else:
                job.write(dict(vals, state="dead", next_attempt=False))
                job._notify_dead()
            _logger.warning(
                "Qimen sync: job %s (%s) %s: %s", job.id, job.bill_code, job.state, error
            )
        return True

    def _company_got_through(self):
        """Whether an update of the job's shop (else company) was acknowledged since the
        job was queued: then the gateway and our credentials work, and its failures are
        its own."""
        self.ensure_one()
        # along the done jobs' index (shop, date) when the job has a shop, as POS orders do
        where = (
            SQL("config_id = %s", self.config_id.id)
            if self.config_id
            else SQL("company_id = %s", self.company_id.id)
        )
        self.env.cr.execute(
            SQL(
                """SELECT 1 FROM qimen_sync_job
                    WHERE %s AND state = 'done' AND date_done >= %s LIMIT 1""",
                where,
                self.create_date,
            )
        )
        return bool(self.env.cr.fetchone())

    def _reclaim_expired(self):
        """Jobs whose sender died (their lease ran out) go back to the queue."""
        self.env.flush_all()
        self.env.cr.execute(expired_query(fields.Datetime.now()))
        expired = self.sudo().browse([row[0] for row in self.env.cr.fetchall()])
        expired._record_failure(
            True,
            self.env._("Interrupted while sending (its sender stopped); it will be sent again."),
        )
        return expired

    def _trigger_next_retry(self):
        """Have the cron run when the earliest failed job is due again, or the earliest
        lease ends (a sender that died)."""
        self.env.cr.execute(NEXT_WAKE_QUERY)
        at = self.env.cr.fetchone()[0]
        if at:
            self._create_dispatch_trigger(at.replace(microsecond=0) + timedelta(seconds=1))

    # -- settings ---------------------------------------------------------------------
    @api.model
    def _lease_seconds(self):
        """A claim's lease: twice the longest a call can take (the client's own bound,
        over the companies that send: a lane takes its next job while a call is under
        way), and a margin to record its outcome."""
        companies = self.env["res.company"].sudo().search([("qimen_enabled", "=", True)])
        longest = max(
            (company._qimen_client().max_call_seconds for company in companies), default=0.0
        )
        return 2 * longest + LEASE_MARGIN_SECONDS

    @api.model
    def _lane_count(self):
        value = self.env["ir.config_parameter"].sudo().get_param("pos_qimen_sync.lanes", "4")
        try:
            return min(max(int(value), 1), 32)
        except ValueError:
            return 4

    @api.model
    def _retry_base_seconds(self):
        value = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("pos_qimen_sync.retry_base_seconds", str(RETRY_BASE_SECONDS))
        )
        try:
            return max(float(value), 1.0)
        except ValueError:
            return RETRY_BASE_SECONDS
