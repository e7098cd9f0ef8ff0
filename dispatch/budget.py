"""How long a cron run may take jobs.

``ir.cron`` calls a cron again while it reports work left, and runs the other crons of
its pass in the same thread: a budget per call bounds nothing. The budget is therefore
counted from the start of the cron thread's pass (threaded server), or from the prefork
cron worker's last ping of its watchdog (see :mod:`.watchdog`), and covers the call in
flight."""

import threading
import time

from odoo.tools import config

from ..const import MAX_CLAIM_SECONDS, RUN_SHARE_OF_TIME_LIMIT
from .watchdog import in_prefork_worker, watchdog_pinged_at


def cron_time_limit():
    """The real-time limit of a cron run (seconds), as Odoo applies it."""
    for name in ("limit_time_real_cron", "limit_time_real"):
        limit = config[name]
        if limit and limit > 0:
            return limit
    return 120


def run_deadline():
    """When this cron run must be over (wall clock); None when it cannot be known (a
    prefork worker that loaded the addon after its last ping)."""
    started = getattr(threading.current_thread(), "start_time", None)
    if not started and in_prefork_worker():
        started = watchdog_pinged_at()
        if not started:
            return None
    return (started or time.time()) + RUN_SHARE_OF_TIME_LIMIT * cron_time_limit()


def claim_deadline(run_end, lease):
    """Until when a run ending at ``run_end`` may take a job whose call lasts up to
    ``lease`` seconds. When a call may outlast what is left of the run (a prefork worker
    that slept, long timeouts), jobs are taken until the run ends: a lane still calling
    then is left behind on its lease, and the run still ends in time."""
    claim_until = min(run_end - lease, time.time() + MAX_CLAIM_SECONDS)
    return run_end if claim_until <= time.time() else claim_until
