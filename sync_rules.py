"""The rules of an order's sync, each written once and read by everything that needs it:
the order's fields (compute and search), the reconciliation report (a SQL view) and the
till (which reads the computed field).

An order's **sync state** follows from its jobs (superseded and cancelled ones aside)
and from what the order records:

- ``failed``: an update is dead, or none could be queued (``qimen_config_error``);
- ``pending``: an update waits (pending, sending, failed and due again);
- ``synced``: every update was acknowledged, or they went out and were deleted after the
  retention period (the order records events but has no job left at all);
- ``not_needed``: nothing to send.
"""

from functools import cache

from odoo.osv.expression import OR
from odoo.tools import SQL

SYNC_STATE_SELECTION = [
    ("not_needed", "Not needed"),
    ("pending", "Pending"),
    ("synced", "Synced"),
    ("failed", "Failed"),
]

# The events an order records, each by the field that says it happened, the values that
# mean so, and the field with its date (the order they happened in, for a requeue).
RECORDED_EVENTS = {
    "confirm": ("qimen_confirm", ("1", "2"), "qimen_confirm_date"),
    "pickup": ("qimen_delivery", ("1",), "qimen_delivery_date"),
    "void": ("qimen_cancelled", (True,), "qimen_cancel_date"),
    "complete": ("qimen_finished", (True,), "qimen_finish_date"),
}
RECORDED_FIELDS = [name for name, _values, _date in RECORDED_EVENTS.values()]


# The order's events, latest state first: the update of the first one an order records
# states what the order is now (a void ends it; a pick-up follows its confirmation; a
# completion is a confirmation with confirm=2). Every update carries the whole state.
CURRENT_STATE_EVENTS = ("void", "pickup", "complete", "confirm")


def recorded_events(order):
    """The events the store recorded on ``order`` (each one queued an update)."""
    return {
        event for event, (name, values, _date) in RECORDED_EVENTS.items() if order[name] in values
    }


def current_event(order):
    """The event whose update states ``order`` as it is now (None: it records none)."""
    events = recorded_events(order)
    return next((event for event in CURRENT_STATE_EVENTS if event in events), None)


def recorded_domain():
    """Domain: the order records at least one event."""
    return OR([[(name, "in", list(values))] for name, values, _date in RECORDED_EVENTS.values()])


# The SQL builders below run once per alias (an SQL object is immutable): the till reads
# the sync state on every call, which would compose them anew each time.
@cache
def recorded_sql(order):
    """SQL: the order (alias ``order``) records at least one event."""
    return SQL(" OR ").join(
        SQL(
            "%s IN %s",
            SQL.identifier(order, name),
            tuple(values),
        )
        for name, values, _date in RECORDED_EVENTS.values()
    )


@cache
def job_facts_sql(order):
    """SQL of a LATERAL subquery, aliased ``facts``: what the jobs of the order (alias
    ``order``) say, in one probe of the jobs' order index."""
    return SQL(
        """LATERAL (
               SELECT bool_or(job.state = 'dead') AS dead,
                      bool_or(job.state IN ('pending', 'sending', 'failed')) AS waiting,
                      bool_or(job.state = 'done') AS done,
                      count(*) AS jobs,
                      count(*) FILTER (
                          WHERE job.state NOT IN ('superseded', 'cancelled')) AS live,
                      bool_or(job.state IN ('sending', 'done') OR job.last_request IS NOT NULL)
                          AS went_out,
                      max(job.date_done) AS last_done
                 FROM qimen_sync_job job
                WHERE job.order_id = %s
           ) AS facts""",
        SQL.identifier(order, "id"),
    )


def queued_state(dead):
    """The sync state of an order an update was just queued for, as
    :func:`sync_state_sql` says it (a dead update first, then one waiting), without
    asking the database: ``dead``, whether an update of the order is dead."""
    return "failed" if dead else "pending"


@cache
def sync_state_sql(order):
    """SQL: the sync state of the order (alias ``order``), from :func:`job_facts_sql`."""
    return SQL(
        """CASE WHEN facts.dead THEN 'failed'
                WHEN facts.waiting THEN 'pending'
                WHEN facts.done THEN 'synced'
                WHEN %(error)s IS NOT NULL THEN 'failed'
                WHEN facts.jobs = 0 AND (%(recorded)s) THEN 'synced'
                ELSE 'not_needed' END""",
        error=SQL.identifier(order, "qimen_config_error"),
        recorded=recorded_sql(order),
    )


@cache
def event_states_sql(order):
    """SQL of a LATERAL subquery, aliased ``events``: for each event, ``<event>_state``
    and ``<event>_date``, the state of its update and when the ERP acknowledged it (its
    live job, else its latest superseded or cancelled one; NULL without a job); and of
    the update the order waits on (its first not acknowledged), ``attempts``, its failed
    attempts (0 when none waits), and ``head_error``, its last error. One more probe of
    the jobs' order index, for the jobs :func:`job_facts_sql` read."""
    finished = SQL("job.state IN ('superseded', 'cancelled')")
    by_event = []
    for event in RECORDED_EVENTS:
        for column, value in (("state", "job.state"), ("date", "job.date_done")):
            by_event.append(
                SQL(
                    """(array_agg(%(value)s ORDER BY %(finished)s,
                                  CASE WHEN %(finished)s THEN -job.id ELSE job.id END)
                            FILTER (WHERE job.event = %(event)s))[1] AS %(column)s""",
                    value=SQL(value),
                    finished=finished,
                    event=event,
                    column=SQL.identifier(f"{event}_{column}"),
                )
            )
    head = SQL("FILTER (WHERE job.state IN ('pending', 'sending', 'failed', 'dead'))")
    return SQL(
        """LATERAL (
               SELECT %(by_event)s,
                      COALESCE((array_agg(job.attempts - (job.state = 'sending')::int
                                          ORDER BY job.id) %(head)s)[1], 0) AS attempts,
                      (array_agg(job.last_error ORDER BY job.id) %(head)s)[1] AS head_error
                 FROM qimen_sync_job job
                WHERE job.order_id = %(order_id)s
           ) AS events""",
        by_event=SQL(", ").join(by_event),
        head=head,
        order_id=SQL.identifier(order, "id"),
    )
