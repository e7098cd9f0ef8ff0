"""The SQL of the queue, and the statements a lane prepares once.

Every query here reads along the partial indexes of ``qimen_sync_job`` (see the model's
``init``): its cost is flat however many finished jobs the table holds."""

import time

from odoo.tools import SQL

from ..const import BLOCKING_JOB_STATES


def _heads_of_their_orders(condition):
    """Waiting jobs (pending or failed) matching ``condition`` (SQL on ``job``) with no
    earlier update of the same order still waiting, oldest first. Shaped to read as
    little as possible whatever the table's statistics say: the due jobs' index in id
    order, and for each candidate one probe of the waiting jobs' index (OFFSET 0 keeps
    that probe from becoming a join over every due job); a scan stops at the first."""
    return SQL(
        """
        SELECT job.id FROM qimen_sync_job job
         WHERE job.state IN ('pending', 'failed') AND %(condition)s
           AND NOT EXISTS (
               SELECT 1 FROM qimen_sync_job older
                WHERE older.company_id = job.company_id
                  AND older.bill_code = job.bill_code
                  AND older.id < job.id
                  AND older.state IN %(waiting)s
               OFFSET 0)
         ORDER BY job.id
        """,
        condition=condition,
        waiting=BLOCKING_JOB_STATES,
    )


def due_query(now):
    """Due jobs at the head of their order's queue; a company whose sync is disabled (or
    neutralized), or paused by its breaker, sends nothing."""
    return _heads_of_their_orders(
        SQL(
            """job.next_attempt <= %s
               AND job.company_id IN (SELECT id FROM res_company WHERE qimen_enabled)
               AND job.company_id NOT IN (
                   SELECT company_id FROM qimen_sync_health WHERE state = 'paused')""",
            now,
        )
    )


def probe_query(company):
    """The job a paused company's probe sends: its oldest job at the head of its order's
    queue, due or not (its backoff is the breaker's now)."""
    return _heads_of_their_orders(SQL("job.company_id = %s", company))


def claim_query(now, lease, due=None):
    """Take the oldest due job no other lane holds (of ``due``, a query of job ids; by
    default :func:`due_query`): mark it sending with its lease, and return what its call
    needs, and the health of its company (paused, or failing: see qimen.sync.health)."""
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
               company.id AS company_id, company.write_date AS settings_version,
               EXISTS (SELECT 1 FROM qimen_sync_health health
                        WHERE health.company_id = job.company_id
                          AND (health.state = 'paused' OR health.failing_jobs IS NOT NULL))
        """,
        now=now,
        due=due if due is not None else due_query(now),
        lease=lease,
    )


def done_query(job, lease_until, now, request, reply, code):
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


def done_and_claim_query(job, lease_until, now, request, reply, code, lease):
    """Mark a job acknowledged (if its claim still holds) and take the next due job, in
    one statement: run alone (autocommit), it is a transaction of its own in one round
    trip. Both parts see the queue as it was before the statement, so the next update of
    the order just done is not due yet in it: the lane claims again when nothing else
    was (see :meth:`.lanes.Lane.record_and_claim`). The first column is the recorded job
    (NULL when its claim was taken back), then :func:`claim_query`'s (NULL when none was
    due)."""
    return SQL(
        """WITH done AS (%(done)s), claimed AS (%(claim)s)
           SELECT (SELECT id FROM done), claimed.*
             FROM (SELECT 1) AS one LEFT JOIN claimed ON true""",
        done=done_query(job, lease_until, now, request, reply, code),
        claim=claim_query(now, lease),
    )


def held_query(job, lease_until):
    """Lock a job whose claim still holds (its failure is recorded through the ORM)."""
    return SQL(
        "SELECT id FROM qimen_sync_job WHERE id = %s AND state = 'sending' "
        "AND lease_until = %s FOR UPDATE",
        job,
        lease_until,
    )


def expired_query(now):
    """Jobs whose sender died: still sending after their lease."""
    return SQL(
        """SELECT id FROM qimen_sync_job
            WHERE state = 'sending'
              AND COALESCE(lease_until, sending_since + interval '15 minutes') < %s
              FOR UPDATE SKIP LOCKED""",
        now,
    )


# The dispatcher's crons: the module's and its copies (models/qimen_dispatch_runs.py).
DISPATCH_CRONS = SQL(
    """SELECT cron.id FROM ir_cron cron
         JOIN ir_act_server action ON action.id = cron.ir_actions_server_id
        WHERE action.model_name = 'qimen.sync.job' AND action.code = 'model._cron_dispatch()'"""
)

NEXT_WAKE_QUERY = SQL(
    """SELECT MIN(at) FROM (
           SELECT MIN(next_attempt) AS at FROM qimen_sync_job WHERE state = 'failed'
            UNION ALL
           SELECT MIN(lease_until) FROM qimen_sync_job WHERE state = 'sending'
            UNION ALL
           SELECT MIN(next_probe) FROM qimen_sync_health health
             JOIN res_company company ON company.id = health.company_id
            WHERE health.state = 'paused' AND company.qimen_enabled
       ) AS times WHERE at > (now() AT TIME ZONE 'UTC')"""
)


class Statements:
    """The statements a lane prepared on its connection, each planned once (see
    :func:`.lanes.set_up_lane_connection`): planning the claim costs a millisecond, as
    much as the rest of a job's bookkeeping. A prepared statement outlives transactions;
    it is gone when the pool resets the connection."""

    def __init__(self):
        self.prepared = {}  # name: the text of its EXECUTE, composed once

    def execute(self, cr, name, types, build, *args):
        """Execute ``build(*args)`` as the statement ``name`` (argument ``types``),
        prepared on the first call. Errors are the caller's to retry, not logged."""
        execute = self.prepared.get(name)
        if execute is None:
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
            # composing it from SQL objects at each run cost a lane a tenth of a
            # millisecond per update
            placeholders = SQL(", ").join(SQL("%s", None) for _type in types)
            execute = SQL("EXECUTE %s(%s)", SQL.identifier(name), placeholders).code
            self.prepared[name] = execute
        return cr.execute(execute, args, log_exceptions=False)


class Unprepared:
    """The same interface, without preparing: for a claim outside a lane."""

    @staticmethod
    def execute(cr, name, types, build, *args):
        return cr.execute(build(*args), log_exceptions=False)


def delete_in_batches(cr, table, condition, batch, seconds, commit):
    """DELETE the rows of ``table`` matching ``condition`` (SQL) by batches of ``batch``
    for ``seconds`` at most, each committed when ``commit`` (a caller that owns no
    transaction: the autovacuum); return how many went."""
    stop_at, deleted = time.monotonic() + seconds, 0
    while True:
        cr.execute(
            SQL(
                "DELETE FROM %(table)s WHERE id IN (SELECT id FROM %(table)s WHERE %(cond)s "
                "LIMIT %(batch)s)",
                table=table,
                cond=condition,
                batch=batch,
            )
        )
        count = cr.rowcount
        deleted += count
        if commit:
            cr.commit()  # pylint: disable=invalid-commit
        if count < batch or time.monotonic() > stop_at:
            return deleted
