"""When Odoo's prefork watchdog last heard from this worker.

A prefork worker pings its watchdog before it sleeps, and is killed ``limit_time_real``
(a cron worker: ``limit_time_real_cron``) after its last ping. Odoo keeps the ping's time
in the parent process only; the worker notes it too, so that a cron run knows how much of
its time limit is left (see :mod:`.budget`).

:func:`patch_prefork_server` is the addon's ``post_load`` hook (``__manifest__.py``): Odoo
calls it when it imports the addon, which a server started with ``-d`` (or with the addon
in ``--load``, ``server_wide_modules``) does before it forks its workers."""

import functools
import threading
import time

from odoo.service import server

PING_ATTRIBUTE = "qimen_watchdog_pinged_at"


def in_prefork_worker():
    return isinstance(server.server, server.PreforkServer)


def watchdog_pinged_at():
    """When this prefork worker last pinged its watchdog; None when not known (the
    addon was loaded in the worker after its last ping)."""
    return getattr(threading.current_thread(), PING_ATTRIBUTE, None)


def _noting_the_time(pipe_ping):
    @functools.wraps(pipe_ping)
    def pipe_ping_noted(self, pipe):
        setattr(threading.current_thread(), PING_ATTRIBUTE, time.time())
        return pipe_ping(self, pipe)

    pipe_ping_noted.qimen_notes_the_time = True
    return pipe_ping_noted


def patch_prefork_server():
    """Have prefork workers note when they ping their watchdog (once per process)."""
    if not getattr(server.PreforkServer.pipe_ping, "qimen_notes_the_time", False):
        server.PreforkServer.pipe_ping = _noting_the_time(server.PreforkServer.pipe_ping)
