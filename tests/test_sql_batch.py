from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL

from ..sql_batch import execute_soon, execute_with_batch, sql_batch


@tagged("post_install", "-at_install")
class TestSqlBatch(TransactionCase):
    """Statements held back in a batch go to PostgreSQL with the next one, in one round
    trip (one execute of the cursor)."""

    def setUp(self):
        super().setUp()
        self.cr.execute("CREATE TEMPORARY TABLE qimen_batch_test (name varchar)")
        self.addCleanup(self.cr.execute, "DROP TABLE IF EXISTS qimen_batch_test")

    def insert(self, name):
        return SQL("INSERT INTO qimen_batch_test (name) VALUES (%s)", name)

    def names(self):
        self.cr.execute("SELECT name FROM qimen_batch_test ORDER BY name")
        return [row[0] for row in self.cr.fetchall()]

    def test_held_back_then_sent_with_the_next_statement(self):
        with sql_batch(self.cr):
            execute_soon(self.cr, self.insert("note"))
            self.assertEqual(self.names(), [])  # not sent yet
            executed = self.cr.sql_log_count
            execute_with_batch(
                self.cr,
                SQL("%s RETURNING name", self.insert("log")),
            )
            self.assertEqual(self.cr.sql_log_count, executed + 1)
            self.assertEqual(self.cr.fetchall(), [("log",)])  # the last statement's rows
            self.assertEqual(self.names(), ["log", "note"])
        self.assertEqual(self.names(), ["log", "note"])  # nothing sent twice

    def test_outside_a_batch_a_statement_runs_at_once(self):
        execute_soon(self.cr, self.insert("alone"))
        self.assertEqual(self.names(), ["alone"])
        execute_with_batch(self.cr, self.insert("next"))
        self.assertEqual(self.names(), ["alone", "next"])

    def test_the_end_of_the_block_sends_what_is_left(self):
        with sql_batch(self.cr):
            execute_soon(self.cr, self.insert("a"))
            execute_soon(self.cr, self.insert("b"))
            self.assertEqual(self.names(), [])
        self.assertEqual(self.names(), ["a", "b"])

    def test_an_error_in_the_block_drops_what_is_held(self):
        with self.assertRaises(ValueError), sql_batch(self.cr):
            execute_soon(self.cr, self.insert("dropped"))
            raise ValueError("the caller rolls back")
        execute_soon(self.cr, self.insert("after"))  # no batch left open
        self.assertEqual(self.names(), ["after"])

    def test_batches_nest(self):
        with sql_batch(self.cr):
            execute_soon(self.cr, self.insert("outer"))
            with sql_batch(self.cr):
                execute_soon(self.cr, self.insert("inner"))
            self.assertEqual(self.names(), ["inner"])
        self.assertEqual(self.names(), ["inner", "outer"])

    def test_a_flush_inside_the_block_loses_nothing(self):
        # a flushing savepoint runs the precommit hooks, which clear their data (where
        # the batch is found): what was held goes at the end of the block, what comes
        # after the flush runs at once
        with sql_batch(self.cr):
            execute_soon(self.cr, self.insert("held"))
            with self.cr.savepoint():
                pass
            self.assertNotIn("pos_qimen_sync.sql_batch", self.cr.precommit.data)
            execute_soon(self.cr, self.insert("after flush"))
            self.assertEqual(self.names(), ["after flush"])
            execute_with_batch(self.cr, self.insert("log"))
            self.assertEqual(self.names(), ["after flush", "log"])
        self.assertEqual(self.names(), ["after flush", "held", "log"])
