import importlib
import os

from odoo.modules.migration import load_script
from odoo.modules.module import get_manifest, get_module_path
from odoo.service import server
from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestInstall(TransactionCase):
    def test_the_migration_drops_the_indexes_of_earlier_versions(self):
        """18.0.1.1.0 drops indexes that cost each state change of a job; a fresh
        installation has none of them, so the test makes one as 18.0.1.0.0 did."""
        cr = self.env.cr
        cr.execute("CREATE INDEX qimen_sync_job__state_index ON qimen_sync_job (state)")
        path = os.path.join(
            get_module_path("pos_qimen_sync"), "migrations", "18.0.1.1.0", "pre-migrate.py"
        )
        migration = load_script(path, "pos_qimen_sync_pre_migrate")
        migration.migrate(cr, "18.0.1.0.0")
        cr.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'qimen_sync_job'")
        indexes = {row[0] for row in cr.fetchall()}
        self.assertNotIn("qimen_sync_job__state_index", indexes)
        self.assertIn("qimen_sync_job_due_idx", indexes, "the partial indexes stay")

    def test_the_post_load_hook_patches_the_prefork_watchdog_once(self):
        manifest = get_manifest("pos_qimen_sync")
        addon = importlib.import_module("odoo.addons.pos_qimen_sync")
        hook = getattr(addon, manifest["post_load"])
        hook()
        patched = server.PreforkServer.pipe_ping
        self.assertTrue(patched.qimen_notes_the_time)
        hook()  # Odoo imports an addon once per process; a second call changes nothing
        self.assertIs(server.PreforkServer.pipe_ping, patched)
