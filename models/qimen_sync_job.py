import functools
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg2
from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED
from psycopg2.extras import Json

from odoo import SUPERUSER_ID, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.sql_db import connection_info_for
from odoo.tools import SQL, config

from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION

from ..const import (
    BLOCKING_JOB_STATES,
    EVENT_STATUS,
    FINISHED_JOB_STATES,
    GC_BATCH,
    GC_SECONDS,
    JOB_STATE_SELECTION,
    LEASE_MARGIN_SECONDS,
    MAX_CLAIM_SECONDS,
    RETRY_BASE_SECONDS,
    RETRY_MAX_SECONDS,
    RUN_SHARE_OF_TIME_LIMIT,
)
from ..qimen import QimenValidationError, SendResult
from ..qimen.const import API_SALESORDER_UPDATE
from ..qimen.request import build_salesorder_update
from ..qimen.responses import PERMANENT, TRANSIENT
from ..qimen.text import storable
from ..worker_ping import in_prefork_worker, watchdog_pinged_at

_logger = logging.getLogger(__name__)

# Errors after which a transaction is worth running again from the start.
RETRYABLE_ERRORS = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
    psycopg2.errors.LockNotAvailable,
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
        "last_request",
        "last_reply",
        "dead_notified",
    }
)


def _sent_query(result):
    """What a job keeps of its request: the system parameters, signature masked (its
    business parameters are the job's payload, and a row stays small)."""
    return {"query": result.request["query"]} if result.request else None


def _testing():
    return getattr(threading.current_thread(), "testing", False)


class CronWaker:
    """Wakes Odoo's cron threads (NOTIFY cron_trigger, on the 'postgres' database, as
    ``ir.cron._notifydb`` does) from a thread of its own, over a connection it keeps:
    Odoo opens a new connection for each wake-up (a new server process, milliseconds of
    CPU), which a till's request should neither wait for nor pay at every sale. Wake-ups
    asked for while one is being sent are sent together."""

    def __init__(self):
        self._databases = set()
        self._lock = threading.Lock()
        self._asked = threading.Event()
        self._thread = None
        self._connection = None

    def wake(self, dbname):
        with self._lock:
            self._databases.add(dbname)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="qimen-cron-waker", daemon=True
                )
                self._thread.start()
        self._asked.set()

    def _run(self):
        while True:
            self._asked.wait()
            self._asked.clear()
            with self._lock:
                databases, self._databases = self._databases, set()
            for dbname in databases:
                try:
                    self._notify(dbname)
                except psycopg2.Error:
                    self._connection = None  # a new one next time
                    _logger.warning("Qimen sync: could not wake the cron threads", exc_info=True)

    def _notify(self, dbname):
        if self._connection is None or self._connection.closed:
            _name, info = connection_info_for("postgres")
            self._connection = psycopg2.connect(**info)
            self._connection.autocommit = True
        query = SQL("SELECT %s('cron_trigger', %s)", SQL.identifier(ODOO_NOTIFY_FUNCTION), dbname)
        with self._connection.cursor() as cr:
            cr.execute(query.code, query.params)


CRON_WAKER = CronWaker()


def delete_in_batches(env, table, condition):
    """DELETE the rows of ``table`` matching ``condition`` (SQL) by batches of GC_BATCH,
    each committed (outside tests), for GC_SECONDS at most; return how many went."""
    batch, stop_at, deleted = GC_BATCH, time.monotonic() + GC_SECONDS, 0
    while True:
        env.cr.execute(
            SQL(
                "DELETE FROM %(table)s WHERE id IN (SELECT id FROM %(table)s WHERE %(cond)s "
                "LIMIT %(batch)s)",
                table=table,
                cond=condition,
                batch=batch,
            )
        )
        count = env.cr.rowcount
        deleted += count
        if not _testing():
            env.cr.commit()  # pylint: disable=invalid-commit
        if count < batch or time.monotonic() > stop_at:
            return deleted


@dataclass
class Lane:
    """What a sending lane keeps between its claims: each company's client (with the
    settings version it was built from), and the statements it prepared."""

    senders: dict = field(default_factory=dict)
    prepared: set = field(default_factory=set)


@dataclass
class Claim:
    """A job taken by a sender: what to send, read before the claim commits, so that
    no transaction stays open during the call."""

    job_id: int
    lease_until: datetime
    bill_code: str
    client: object = None
    params: dict = None
    result: SendResult = None  # known without calling (invalid data, configuration)
    crashed: bool = False  # the call raised: a bug, recorded as a transient failure

    def send(self):
        if self.result is None:
            try:
                self.result = self.client.call(API_SALESORDER_UPDATE, self.params)
            except Exception as exc:  # recorded on the job, never raised
                _logger.exception("Qimen sync: job %s failed unexpectedly", self.job_id)
                self.result, self.crashed = SendResult(TRANSIENT, message=str(exc)), True
        return self.result


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
        table holds, and the unique one makes queueing the same update twice a no-op."""
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
        ):
            self.env.cr.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS %s ON qimen_sync_job %s",
                    SQL.identifier(name),
                    SQL(definition),
                )
            )
        # indexes of earlier versions that cost each state change and serve nothing
        self.env.cr.execute(
            "DROP INDEX IF EXISTS qimen_sync_job__company_id_index, qimen_sync_job__state_index, "
            "qimen_sync_job__bill_code_index"
        )
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS qimen_sync_job_live_update_uniq "
            "ON qimen_sync_job (company_id, bill_code, event) "
            "WHERE state NOT IN ('superseded', 'cancelled')"
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

    @api.depends("event")
    def _compute_status(self):
        for job in self:
            job.status = EVENT_STATUS.get(job.event)

    def write(self, vals):
        """Jobs move through their actions only (as OCA queue_job protects its jobs): a
        user, even a POS manager over RPC, cannot rewrite what is sent or its state."""
        if not self.env.su and PROTECTED_FIELDS.intersection(vals):
            raise AccessError(
                self.env._("Sync jobs are changed by their actions only (Retry, Cancel).")
            )
        return super().write(vals)

    # -- enqueueing (inside the POS transaction: cheap, no I/O) -------------------------
    @api.model
    def _enqueue(self, updates):
        """Queue ``updates``, a list of ``(order, event, payload)``, in one INSERT.

        An update already queued (same company, bill code and event, not superseded or
        cancelled) is skipped by a unique index. A void carries the whole state of its
        order, so it supersedes the updates of that order that have not gone out yet."""
        if not updates:
            return self.browse()
        cr, now, uid = self.env.cr, fields.Datetime.now(), self.env.uid
        rows = SQL(", ").join(
            SQL(
                "(%s, %s, %s, %s, %s, %s, %s, 'pending', 0, %s, false, %s, %s, %s, %s)",
                order.company_id.id,
                order.id,
                order.config_id.id or None,
                payload["orderBillCode"],
                event,
                EVENT_STATUS[event],
                Json(payload),
                now,
                uid,
                now,
                uid,
                now,
            )
            for order, event, payload in updates
        )
        cr.execute(
            SQL(
                """INSERT INTO qimen_sync_job
                       (company_id, order_id, config_id, bill_code, event, status, payload,
                        state, attempts, next_attempt, dead_notified,
                        create_uid, create_date, write_uid, write_date)
                   VALUES %s ON CONFLICT DO NOTHING
                   RETURNING id, company_id, bill_code, event""",
                rows,
            )
        )
        inserted = cr.fetchall()
        jobs = self.browse([row[0] for row in inserted])
        voided = {(company, bill) for _id, company, bill, event in inserted if event == "void"}
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
        if jobs:
            self._trigger_dispatch()
        return jobs

    def _trigger_dispatch(self):
        """Have the dispatcher run as soon as this transaction commits: one cron trigger
        per transaction however many jobs it queues (a precommit hook runs only if the
        transaction commits, and once)."""
        precommit = self.env.cr.precommit
        if "pos_qimen_sync.trigger" not in precommit.data:
            precommit.data["pos_qimen_sync.trigger"] = True
            precommit.add(self._create_dispatch_trigger)

    def _create_dispatch_trigger(self, at=None):
        """Have the dispatcher's cron run ``at`` (default: now). The trigger row is one
        INSERT (the ORM's create costs the cashier a millisecond); the cron threads are
        woken after the commit by :data:`CRON_WAKER`, off the committing request."""
        cron_id = self.env["ir.model.data"]._xmlid_to_res_id(
            "pos_qimen_sync.ir_cron_qimen_dispatch"
        )
        now = fields.Datetime.now()
        at = at or now
        self.env.cr.execute(  # not for an inactive cron, nor twice for a later time
            SQL(
                """INSERT INTO ir_cron_trigger
                          (cron_id, call_at, create_uid, create_date, write_uid, write_date)
                   SELECT %(cron)s, %(at)s, %(uid)s, %(now)s, %(uid)s, %(now)s
                    WHERE EXISTS (SELECT 1 FROM ir_cron WHERE id = %(cron)s AND active)
                      AND (%(at)s <= %(now)s OR NOT EXISTS (
                          SELECT 1 FROM ir_cron_trigger
                           WHERE cron_id = %(cron)s AND call_at = %(at)s))""",
                cron=cron_id,
                at=at,
                uid=self.env.uid,
                now=now,
            )
        )
        postcommit = self.env.cr.postcommit
        if at <= now and "pos_qimen_sync.wake" not in postcommit.data:
            postcommit.data["pos_qimen_sync.wake"] = True
            postcommit.add(functools.partial(CRON_WAKER.wake, self.env.cr.dbname))

    # -- dispatching --------------------------------------------------------------------
    @api.model
    def _cron_dispatch(self):
        """Send due jobs on parallel lanes until the run's time budget is used up.

        Each lane has its own cursor and takes one due job at a time (``SKIP LOCKED``),
        so several workers or servers can dispatch at once; an order's updates still go
        out one after the other. The budget covers the whole cron run (Odoo may call a
        cron again while it reports progress, and runs other crons in the same pass):
        no job is taken whose call could end after RUN_SHARE_OF_TIME_LIMIT of
        ``limit_time_real``. When work remains, a fresh run is triggered instead."""
        self._reclaim_expired()
        lease = self._lease_seconds()
        run_end = self._run_deadline()
        if run_end is None:  # a prefork worker that loaded the addon during this pass
            self._create_dispatch_trigger()  # the next pass knows its time limit
            _logger.info("Qimen sync: time limit unknown in this pass; a fresh run is asked")
            return 0
        claim_until = min(run_end - lease, time.time() + MAX_CLAIM_SECONDS)
        if claim_until <= time.time():
            # a call may outlast what is left of the run (a prefork worker that slept, long
            # timeouts): take jobs until the run ends; a lane still calling then is left
            # behind, on its lease, and the run still ends in time
            claim_until = run_end
        if _testing():  # the test transaction is invisible to other cursors: one lane here
            sent = self.sudo()._lane(claim_until, lease)
        else:
            self.env.cr.commit()  # pylint: disable=invalid-commit
            sent = self._run_lanes(claim_until, run_end, self._lane_count(), lease)
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
        """Run ``lanes`` sending threads and wait for them until ``run_end`` at most."""
        counts, lease = [], lease or self._lease_seconds()
        threads = [
            threading.Thread(
                target=self._lane_thread,
                args=(self.pool, claim_until, lease, counts),
                name=f"qimen-sync-lane-{number}",
                daemon=True,
            )
            for number in range(lanes)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(run_end - time.time(), 0.0))
        late = sum(thread.is_alive() for thread in threads)
        if late:  # a gateway slower than every timeout: leave it, its lease runs out
            _logger.warning("Qimen sync: %s lane(s) still waiting for the gateway", late)
        return sum(counts)

    def _lane_thread(self, registry, claim_until, lease, counts):
        """A lane: its own cursor (a real transaction per claim and per outcome)."""
        threading.current_thread().dbname = registry.db_name  # for Odoo's log lines
        try:
            with registry.cursor() as cr:
                # the registry is handed over: Registry(dbname), which a new environment
                # would call, waits for the registry lock (held while Odoo loads, and
                # while its test runner runs the tests)
                cr.transaction = api.Transaction(registry)
                self._lane_connection(cr)
                # notifications (a dead job's to-do) are mailed by the mail queue, not by
                # the sender after its commit
                env = api.Environment(cr, SUPERUSER_ID, {"mail_notify_force_send": False})
                counts.append(env["qimen.sync.job"]._lane(claim_until, lease))
        except Exception:
            _logger.exception("Qimen sync: a sending lane stopped")

    @staticmethod
    def _lane_connection(cr):
        """Set up a lane's connection for the lane's life (the pool resets it after):
        every transaction in READ COMMITTED (see _transaction), and the statements it
        prepares planned once. Left to itself, PostgreSQL plans a prepared statement
        again at each run while the table holds few jobs, which costs as much as the
        scan; these statements are shaped to need no statistics (see _due_query)."""
        cr.connection.set_isolation_level(ISOLATION_LEVEL_READ_COMMITTED)
        cr.execute("SET plan_cache_mode = force_generic_plan")
        cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _lane(self, claim_until, lease):
        """Take due jobs one after the other and send them, until none is due or the time
        is up; return how many were sent. The calls run on a thread of their own, so that
        the lane's database work hides behind the gateway's latency: the next job is taken
        while the current one's call is under way, and an outcome is recorded while the
        next call is (an order's next update is not due before its previous one is done,
        so the two are never of the same order)."""
        lane, sent = Lane(), 0

        def claim_next():
            return self._transaction(
                lambda: self._claim_next(claim_until, lane, lease), read_committed=True
            )

        with ThreadPoolExecutor(1, thread_name_prefix="qimen-sync-call") as caller:
            claim = claim_next()
            call = claim and caller.submit(claim.send)
            while claim:
                following = claim_next()
                result = call.result()
                following_call = following and caller.submit(following.send)
                self._transaction(
                    lambda claim=claim, result=result: self._record(claim, result, lane),
                    read_committed=True,
                )
                sent += 1
                if not following:  # the order just done may have its next update due
                    following = claim_next()
                    following_call = following and caller.submit(following.send)
                claim, call = following, following_call
        return sent

    def _transaction(self, work, tries=10, read_committed=False):
        """Run ``work`` in a transaction of its own and commit it.

        A lane's transactions run in READ COMMITTED: with ``FOR UPDATE SKIP LOCKED`` a
        job another lane took meanwhile is skipped, and an outcome's guarded UPDATE sees
        the job as it is now, never a serialization failure. In Odoo's REPEATABLE READ,
        or on a deadlock or a lock timeout, ``work`` runs again in a fresh transaction,
        so that an outcome is never lost to a conflict. In tests, the test's transaction
        is used as is. The cache is dropped after: the work writes in SQL, and other
        transactions change the jobs meanwhile."""
        if _testing():
            try:
                return work()
            finally:
                self.env.invalidate_all()
        for attempt in range(1, tries + 1):
            try:
                if (
                    read_committed
                    and self.env.cr.connection.isolation_level != ISOLATION_LEVEL_READ_COMMITTED
                ):
                    self.env.cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                result = work()
                self.env.cr.commit()  # pylint: disable=invalid-commit
                return result
            except RETRYABLE_ERRORS:
                self.env.cr.rollback()
                if attempt == tries:
                    raise
                _logger.info("Qimen sync: transaction conflict, attempt %s", attempt)
                time.sleep(random.uniform(0.05, 0.2) * min(attempt, 5))  # noqa: S311 - jitter
            finally:
                self.env.invalidate_all()
        return None

    def _due_query(self, now):
        """Due jobs with no earlier update of the same order still waiting; a company
        whose sync is disabled (or neutralized) sends nothing. Shaped to read as little
        as possible whatever the table's statistics say: the due jobs' index in id order,
        and for each candidate one probe of the waiting jobs' index (OFFSET 0 keeps that
        probe from becoming a join over every due job); a scan stops at the first."""
        return SQL(
            """
            SELECT job.id FROM qimen_sync_job job
             WHERE job.state IN ('pending', 'failed')
               AND job.next_attempt <= %(now)s
               AND job.company_id IN (SELECT id FROM res_company WHERE qimen_enabled)
               AND NOT EXISTS (
                   SELECT 1 FROM qimen_sync_job older
                    WHERE older.company_id = job.company_id
                      AND older.bill_code = job.bill_code
                      AND older.id < job.id
                      AND older.state IN %(waiting)s
                   OFFSET 0)
             ORDER BY job.id
            """,
            now=now,
            waiting=BLOCKING_JOB_STATES,
        )

    def _due_ids(self, limit=None):
        self.env.flush_all()
        query = self._due_query(fields.Datetime.now())
        if limit:
            query = SQL("%s LIMIT %s", query, limit)
        self.env.cr.execute(query)
        return [row[0] for row in self.env.cr.fetchall()]

    def _claim_query(self, now, lease):
        """Take the oldest due job no other lane holds: mark it sending with its lease,
        and return what its call needs."""
        return SQL(
            """
            UPDATE qimen_sync_job job
               SET state = 'sending', attempts = job.attempts + 1, sending_since = %(now)s,
                   lease_until = %(now)s + make_interval(secs => %(lease)s),
                   write_date = %(now)s
              FROM res_company company
             WHERE company.id = job.company_id
               AND job.id = (%(due)s LIMIT 1 FOR UPDATE OF job SKIP LOCKED)
         RETURNING job.id, job.lease_until, job.bill_code, job.payload,
                   company.id AS company_id, company.write_date AS settings_version
            """,
            now=now,
            due=self._due_query(now),
            lease=lease,
        )

    def _execute(self, lane, name, types, build, *args):
        """Execute the query ``build(*args)``; on a lane, as a statement prepared once on
        its connection and planned once (see _lane_connection): planning the claim costs
        a millisecond, as much as the rest of a job's bookkeeping (a prepared statement
        outlives transactions; it is gone when the pool resets the connection). Errors
        are the caller's to retry, not logged."""
        cr = self.env.cr
        if lane is None:
            return cr.execute(build(*args), log_exceptions=False)
        if name not in lane.prepared:
            cr.execute(SQL("SELECT 1 FROM pg_prepared_statements WHERE name = %s", name))
            if not cr.fetchone():
                template = build(*(SQL(f"${number}") for number in range(1, len(types) + 1)))
                cr.execute(
                    SQL(
                        "PREPARE %s(%s) AS %s",
                        SQL.identifier(name),
                        SQL(", ".join(types)),
                        SQL(cr.mogrify(template.code, template.params).decode()),
                    )
                )
            lane.prepared.add(name)
        values = SQL(", ").join(SQL("%s", arg) for arg in args)
        return cr.execute(SQL("EXECUTE %s(%s)", SQL.identifier(name), values), log_exceptions=False)

    @api.model
    def _claim_next(self, claim_until, lane=None, lease=None):
        """Take the oldest due job that no other lane holds, mark it sending with a lease
        of ``lease`` seconds (the longest its call can take), and return a
        :class:`Claim`, or None. One statement, prepared once per ``lane``, which also
        keeps each company's client between its claims."""
        if time.time() >= claim_until:
            return None
        lease = lease or self._lease_seconds()
        self.env.flush_all()
        self._execute(
            lane,
            "qimen_claim",
            ("timestamp", "float"),
            self._claim_query,
            fields.Datetime.now(),
            float(lease),
        )
        return self._claim_from(self.env.cr.fetchone(), lane)

    def _claim_from(self, row, lane):
        """The :class:`Claim` of a claimed row (None when nothing was claimed)."""
        if not row or row[0] is None:
            return None
        job_id, lease_until, bill_code, payload, company_id, settings_version = row
        claim = Claim(job_id, lease_until, bill_code)
        senders = lane.senders if lane else {}
        sender = senders.get(company_id)
        if not sender or sender[0] != settings_version:  # settings changed: read them again
            sender = (settings_version, *self._sender(self.env["res.company"].browse(company_id)))
            senders[company_id] = sender
        _version, claim.client, problem = sender
        if problem:
            claim.result = SendResult(PERMANENT, message=problem)
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

    def _record(self, claim, result, lane=None):
        """Record the outcome of a claim, unless the job was taken back meanwhile (its
        lease ran out): a late outcome must not overwrite a newer attempt. A success is
        one statement; a failure goes through the ORM (backoff, dead job notices)."""
        reply = storable(result.reply_text) or None
        code = storable(result.code) or None
        if result.ok:
            self._execute(
                lane,
                "qimen_done",
                ("integer", "timestamp", "timestamp", "jsonb", "text", "varchar"),
                self._done_query,
                claim.job_id,
                claim.lease_until,
                fields.Datetime.now(),
                Json(_sent_query(result)) if result.request else None,
                reply,
                code,
            )
        else:
            self.env.cr.execute(
                SQL(
                    "SELECT id FROM qimen_sync_job WHERE id = %s AND state = 'sending' "
                    "AND lease_until = %s FOR UPDATE",
                    claim.job_id,
                    claim.lease_until,
                ),
                log_exceptions=False,
            )
        if not self.env.cr.fetchone():
            self._log_taken_back(claim, result)
            return
        if not result.ok:
            vals = {
                "last_request": _sent_query(result) or False,
                "last_reply": reply or False,
                "last_code": code or False,
            }
            error = storable(result.describe())
            if claim.crashed:
                error = self.env._("Unexpected error: %s", error)
            self.browse(claim.job_id)._record_failure(result.transient, error, vals)

    def _log_taken_back(self, claim, result):
        _logger.warning(
            "Qimen sync: job %s was taken back while its call ran; outcome dropped: %s",
            claim.job_id,
            result.describe(),
        )

    def _done_query(self, job, lease_until, now, request, reply, code):
        """Mark a job acknowledged, if its claim still holds."""
        return SQL(
            """UPDATE qimen_sync_job
                  SET state = 'done', date_done = %(now)s, last_error = NULL,
                      next_attempt = NULL, sending_since = NULL, lease_until = NULL,
                      last_request = %(request)s, last_reply = %(reply)s,
                      last_code = %(code)s, write_date = %(now)s
                WHERE id = %(job)s AND state = 'sending' AND lease_until = %(lease_until)s
            RETURNING id""",
            job=job,
            lease_until=lease_until,
            now=now,
            request=request,
            reply=reply,
            code=code,
        )

    def _record_failure(self, transient, error, vals=None):
        """A failed attempt: retry later with backoff, or give up (dead)."""
        vals = dict(vals or {}, last_error=error, sending_since=False, lease_until=False)
        for job in self:
            max_attempts = job.company_id.qimen_max_attempts or 1
            if transient and job.attempts < max_attempts:
                base = self._retry_base_seconds()
                delay = min(base * 2 ** max(job.attempts - 1, 0), RETRY_MAX_SECONDS)
                delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
                at = fields.Datetime.now() + timedelta(seconds=delay)
                job.write(dict(vals, state="failed", next_attempt=at))
            else:
                job.write(dict(vals, state="dead", next_attempt=False))
                job._notify_dead()
            _logger.warning(
                "Qimen sync: job %s (%s) %s: %s", job.id, job.bill_code, job.state, error
            )
        return True

    def _reclaim_expired(self):
        """Jobs whose sender died (their lease ran out) go back to the queue."""
        self.env.flush_all()
        self.env.cr.execute(
            SQL(
                """SELECT id FROM qimen_sync_job
                    WHERE state = 'sending'
                      AND COALESCE(lease_until, sending_since + interval '15 minutes') < %s
                      FOR UPDATE SKIP LOCKED""",
                fields.Datetime.now(),
            )
        )
        expired = self.sudo().browse([row[0] for row in self.env.cr.fetchall()])
        expired._record_failure(
            True,
            self.env._("Interrupted while sending (its sender stopped); it will be sent again."),
        )
        return expired

    def _trigger_next_retry(self):
        """Have the cron run when the earliest failed job is due again, or the earliest
        lease ends (a sender that died)."""
        self.env.cr.execute(
            """SELECT MIN(at) FROM (
                   SELECT MIN(next_attempt) AS at FROM qimen_sync_job WHERE state = 'failed'
                    UNION ALL
                   SELECT MIN(lease_until) FROM qimen_sync_job WHERE state = 'sending'
               ) AS times WHERE at > (now() AT TIME ZONE 'UTC')"""
        )
        at = self.env.cr.fetchone()[0]
        if at:
            self._create_dispatch_trigger(at.replace(microsecond=0) + timedelta(seconds=1))

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
    def _run_deadline(self):
        """When this cron run must be over (wall clock): a share of the real-time limit
        counted from the start of the cron thread's pass (threaded server), or from the
        prefork cron worker's last ping of its watchdog, made before it waited for work
        (see worker_ping.py); None when that ping's time is not known."""
        limit = config["limit_time_real_cron"]
        if not limit or limit <= 0:
            limit = config["limit_time_real"]
        if not limit or limit <= 0:
            limit = 120
        started = getattr(threading.current_thread(), "start_time", None)
        if not started and in_prefork_worker():
            started = watchdog_pinged_at()
            if not started:
                return None
        return (started or time.time()) + RUN_SHARE_OF_TIME_LIMIT * limit

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

    def _notify_dead(self):
        """Tell the order's readers (in the company's language) and a POS manager (in
        theirs), once per job."""
        for job in self.filtered(lambda j: j.order_id and not j.dead_notified):
            order = job.order_id._qimen_for_readers()
            order.message_post(
                body=order.env._(
                    "The ERP update %(job)s could not be sent: %(error)s",
                    job=job.with_env(order.env).name,
                    error=job.last_error,
                ),
                author_id=self.env.ref("base.partner_root").id,
            )
            order._qimen_ask_manager(
                lambda env, job=job: env._("ERP sync failed: fix and retry"),
                lambda env, job=job: env._(
                    "%(job)s: %(error)s", job=job.with_env(env).name, error=job.last_error
                ),
            )
            job.dead_notified = True

    # -- housekeeping -------------------------------------------------------------------
    @api.autovacuum
    def _gc_finished_jobs(self):
        """Delete finished jobs (acknowledged, superseded, cancelled) older than the
        retention period, in bounded batches committed one by one (as OCA queue_job
        does), along a partial index: flat however many millions the table holds."""
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
            self.env,
            SQL.identifier(self._table),
            SQL("state IN %s AND write_date < %s", FINISHED_JOB_STATES, before),
        )
        self.invalidate_model()
        _logger.info("Qimen sync: deleted %s finished jobs older than %s days", deleted, days)
        return deleted

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
            if customerid and job.payload and job.payload.get("customerid") != customerid:
                job.payload = dict(job.payload, customerid=customerid)
