"""18.0.1.1.0: the unique index of live updates lets an order be sent again once its
previous resend was acknowledged.

``qimen.sync.job.init`` creates the index only when it is missing, and runs before this
script: drop the index of 18.0.1.0.0 and have ``init`` create it with its new predicate."""

from odoo import SUPERUSER_ID, api


def migrate(cr, version):
    if not version:
        return
    cr.execute("DROP INDEX IF EXISTS qimen_sync_job_live_update_uniq")
    api.Environment(cr, SUPERUSER_ID, {})["qimen.sync.job"].init()
