"""Lanes: each takes due jobs one after the other and sends them.

A lane's claim, its call and its outcome are three steps: the claim and the outcome are
transactions of their own (no transaction stays open during a call), and the call runs
on a thread of its own so that the lane's database work hides behind the gateway's
latency. Several lanes (threads with their own cursors), cron workers or servers take
jobs at once: ``FOR UPDATE SKIP LOCKED`` gives each job to one of them, and an order's
next update is not due before its previous one is done."""

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg2
from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED

from odoo import SUPERUSER_ID, api

from ..qimen import SendResult
from ..qimen.const import API_SALESORDER_UPDATE
from ..qimen.responses import TRANSIENT
from .queue_sql import Statements, Unprepared

_logger = logging.getLogger(__name__)

# Errors after which a transaction is worth running again from the start.
RETRYABLE_ERRORS = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
    psycopg2.errors.LockNotAvailable,
)


@dataclass
class Claim:
    """A job taken by a sender: what to send, read before the claim commits, so that
    no transaction stays open during the call."""

    job_id: int
    lease_until: datetime
    bill_code: str
    company_id: int = None
    company_unwell: bool = False  # its company was paused or failing when claimed
    company_problem: bool = False  # its company's settings cannot send
    probe: bool = False  # the one call of a paused company (see qimen.sync.health)
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


class CommittedTransactions:
    """Each piece of work in a transaction of its own, committed.

    In READ COMMITTED (a lane's): with ``FOR UPDATE SKIP LOCKED`` a job another lane
    took meanwhile is skipped, and an outcome's guarded UPDATE sees the job as it is now,
    never a serialization failure. In Odoo's REPEATABLE READ, or on a deadlock or a lock
    timeout, the work runs again in a fresh transaction, so that an outcome is never
    lost to a conflict. The cache is dropped after: the work writes in SQL, and other
    transactions change the jobs meanwhile.

    A lane's connection runs in autocommit (see :func:`set_up_lane_connection`): a
    single statement (:meth:`run_alone`) is then a transaction of its own in one round
    trip, without BEGIN and COMMIT; other work gets a transaction."""

    def __init__(self, env, read_committed=False, tries=10):
        self.env, self.read_committed, self.tries = env, read_committed, tries

    def run(self, work):
        connection = self.env.cr.connection
        if not connection.autocommit:
            return self._attempts(work)
        connection.autocommit = False
        try:
            return self._attempts(work)
        finally:
            if not connection.closed:
                connection.autocommit = True

    def run_alone(self, work):
        """Run ``work``, a single statement (and reads), in autocommit on a lane's
        connection, else in a transaction like any work."""
        return self._attempts(work)

    def _attempts(self, work):
        cr = self.env.cr
        for attempt in range(1, self.tries + 1):
            try:
                if (
                    self.read_committed
                    and not cr.connection.autocommit
                    and cr.connection.isolation_level != ISOLATION_LEVEL_READ_COMMITTED
                ):
                    cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                result = work()
                cr.commit()  # pylint: disable=invalid-commit
                return result
            except RETRYABLE_ERRORS:
                cr.rollback()
                if attempt == self.tries:
                    raise
                _logger.info("Qimen sync: transaction conflict, attempt %s", attempt)
                time.sleep(random.uniform(0.05, 0.2) * min(attempt, 5))  # noqa: S311 - jitter
            finally:
                self.env.invalidate_all()
        return None


class EnclosingTransaction:
    """Work runs in the caller's transaction and commits nothing: for a caller that owns
    its transaction (a test, an ``odoo shell``), which sees the outcome before it
    commits or rolls back."""

    def __init__(self, env):
        self.env = env

    def run(self, work):
        try:
            return work()
        finally:
            self.env.invalidate_all()

    run_alone = run  # one statement or several, in the caller's transaction


class Lane:
    """One sending lane: the statements it prepared and each company's client (with the
    settings version it was built from) are kept between its claims."""

    def __init__(self, jobs, transactions, statements=None):
        self.jobs = jobs  # the qimen.sync.job model, on the lane's environment
        self.transactions = transactions
        self.statements = statements or Unprepared()
        self.senders = {}

    def claim_next(self, claim_until, lease):
        return self.transactions.run_alone(lambda: self.jobs._claim_next(claim_until, self, lease))

    def record_and_claim(self, claim, result, claim_until, lease):
        """Record an outcome and take the next job. A success of a company in good
        health (most outcomes) is one statement, a transaction of its own; when that
        statement found nothing due, the lane claims again, which sees the next update
        of the order just done. Any other outcome goes through the ORM (backoff,
        notices, the company's health) in one transaction with the next claim, taken
        after the outcome is recorded for the same reason."""
        if result.ok and not claim.company_unwell and time.time() < claim_until:
            taken = self.transactions.run_alone(
                lambda: self.jobs._record_done_and_claim(claim, result, self, lease)
            )
            return taken or self.claim_next(claim_until, lease)

        def work():
            self.jobs._record(claim, result, self)
            return self.jobs._claim_next(claim_until, self, lease)

        return self.transactions.run(work)

    def run(self, claim_until, lease):
        """Send due jobs until none is due or the time is up; return how many were
        sent. The lane's caller thread sends one claim after the other; the lane keeps
        the next claim waiting for it, so that the caller starts the next call as soon as
        one returns, without waiting for this thread. An outcome is recorded (with the
        job after the next one taken) while the next call is under way (the two are never
        of one order: an order's next update is not due while one of its updates is
        being sent)."""
        sent, handed = 0, 0  # handed: claims given to the caller, outcome not recorded
        calls, outcomes = queue.SimpleQueue(), queue.SimpleQueue()
        caller = threading.Thread(
            target=_send_each,
            args=(calls, outcomes),
            name=f"{threading.current_thread().name}-call",
            daemon=True,  # like the lanes: a gateway slower than every timeout is left
        )
        caller.start()
        try:
            taken = self.claim_next(claim_until, lease)
            while taken or handed:
                if taken:
                    calls.put(taken)
                    handed += 1
                    if handed < 2:  # one under way, the next waiting for its turn
                        taken = self.claim_next(claim_until, lease)
                        continue
                claim, result = outcomes.get()
                handed -= 1
                taken = self.record_and_claim(claim, result, claim_until, lease)
                sent += 1
        finally:
            calls.put(None)  # on an error, what it was handed goes first: leases cover it
            caller.join()
        return sent


def _send_each(calls, outcomes):
    """A lane's caller: send each claim handed over until told to stop (None)."""
    while (claim := calls.get()) is not None:
        outcomes.put((claim, claim.send()))


def set_up_lane_connection(cr):
    """Set up a lane's connection for the lane's life (the pool resets it after): every
    transaction in READ COMMITTED, a single statement in autocommit (see
    :class:`CommittedTransactions`), and the statements it prepares planned once. Left
    to itself, PostgreSQL plans a prepared statement again at each run while the table
    holds few jobs, which costs as much as the scan; the queue's statements are shaped
    to need no statistics."""
    cr.connection.set_isolation_level(ISOLATION_LEVEL_READ_COMMITTED)
    cr.execute("SET plan_cache_mode = force_generic_plan")
    cr.commit()  # pylint: disable=invalid-commit
    cr.connection.autocommit = True


def _lane_thread(registry, claim_until, lease, counts):
    """A lane on a thread: its own cursor (a real transaction per claim and outcome)."""
    threading.current_thread().dbname = registry.db_name  # for Odoo's log lines
    try:
        with registry.cursor() as cr:
            # the registry is handed over: Registry(dbname), which a new environment
            # would call, waits for the registry lock (held while Odoo loads, and while
            # its test runner runs the tests)
            cr.transaction = api.Transaction(registry)
            set_up_lane_connection(cr)
            # notifications (a to-do) are mailed by the mail queue, not by the sender
            # after its commit
            env = api.Environment(cr, SUPERUSER_ID, {"mail_notify_force_send": False})
            lane = Lane(
                env["qimen.sync.job"],
                CommittedTransactions(env, read_committed=True),
                Statements(),
            )
            counts.append(lane.run(claim_until, lease))
    except Exception:
        _logger.exception("Qimen sync: a sending lane stopped")


def run_lanes(registry, lanes, claim_until, run_end, lease):
    """Run ``lanes`` lanes on threads of their own and wait for them until ``run_end``
    at most; return how many updates they sent."""
    counts = []
    threads = [
        threading.Thread(
            target=_lane_thread,
            args=(registry, claim_until, lease, counts),
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
