"""Waking Odoo's cron threads after a commit, off the request that committed."""

import logging
import threading

import psycopg2

from odoo.sql_db import connection_info_for
from odoo.tools import SQL

from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION

_logger = logging.getLogger(__name__)


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
