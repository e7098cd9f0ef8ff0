"""Dispatch runs at once: one cron of the dispatcher per run.

Odoo runs a cron on one thread at a time across all of its servers (the thread locks its
row), so a single dispatcher cron keeps a chain's second server idle however long the
queue. The *Dispatch Runs at Once* setting keeps that many copies of the cron (each run
starts *Parallel Senders* lanes); every trigger asks them all, so each server's cron
thread takes one, and the queue's ``SKIP LOCKED`` claims share the jobs between them."""

from odoo import api, models, tools
from odoo.tools import SQL

from ..dispatch.queue_sql import DISPATCH_CRONS

MAX_DISPATCH_RUNS = 8


class QimenSyncJob(models.Model):
    _inherit = "qimen.sync.job"

    @api.model
    def _dispatch_crons(self):
        """The module's dispatcher cron first, then its copies (active or not)."""
        self.env.flush_all()
        self.env.cr.execute(SQL("%s ORDER BY cron.id", DISPATCH_CRONS))
        crons = self.env["ir.cron"].sudo().browse(row[0] for row in self.env.cr.fetchall())
        main = self.env.ref("pos_qimen_sync.ir_cron_qimen_dispatch").sudo()
        return main | (crons - main)

    @api.model
    @tools.ormcache()
    def _dispatch_cron_ids(self):
        """The ids of :meth:`_dispatch_crons`, for the trigger every queued update makes:
        looked up once per server (the lookup joins the crons' server actions by their
        code, half a millisecond of the till's request), again after the runs change.
        A deleted or inactive one is skipped by the trigger itself."""
        self.env.cr.execute(DISPATCH_CRONS)
        return tuple(sorted(row[0] for row in self.env.cr.fetchall()))

    @api.model
    def _set_dispatch_runs(self, runs):
        """Keep ``runs`` crons of the dispatcher: copies of the module's (its schedule and
        active flag), made or deleted."""
        crons = self._dispatch_crons()
        main, copies = crons[:1], crons[1:]
        for number in range(len(copies) + 2, runs + 1):
            main.copy(
                {
                    "name": self.env._("%(name)s (run %(number)s)", name=main.name, number=number),
                    "active": main.active,
                }
            )
        copies[max(runs - 1, 0) :].unlink()
        # this server's cache now and once committed (another thread may refill it
        # meanwhile with the crons committed before), the other servers' at the commit
        self.env.registry.clear_cache()
        self.env.cr.postcommit.add(self.env.registry.clear_cache)
