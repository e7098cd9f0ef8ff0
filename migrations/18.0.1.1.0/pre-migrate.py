"""18.0.1.1.0: drop the single-column indexes of 18.0.1.0.0 on qimen_sync_job.

They cost each state change of a job (two per update sent) and serve no query: the
partial indexes of ``qimen.sync.job.init`` lead with the company and the state."""


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        "DROP INDEX IF EXISTS qimen_sync_job__company_id_index, qimen_sync_job__state_index, "
        "qimen_sync_job__bill_code_index"
    )
