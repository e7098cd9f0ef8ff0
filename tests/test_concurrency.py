"""The dispatcher against real, committed, concurrent transactions and processes.

TransactionCase cannot show any of this (one transaction, never committed): these tests
commit their own data on the test database through separate cursors, run real sending
lanes (threads with their own cursors) and a real sender process, and remove what they
created at the end.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing

import psycopg2

from odoo.modules.registry import Registry
from odoo.tests import BaseCase, get_db_name, tagged
from odoo.tools import config

from ..models.qimen_sync_job import WAKE_KEY
from ..qimen.client import QimenClient, SendResult
from ..qimen.responses import PERMANENT
from ..qimen.sandbox import SandboxGateway
from .common import APP_KEY, APP_SECRET, LoopbackRequests, env_on, remove_committed_orders

JOB_LOGGER = "odoo.addons.pos_qimen_sync"  # the job model and the dispatch package
SETTINGS = {
    "qimen_enabled": True,
    "qimen_gateway": "custom",
    "qimen_app_key": APP_KEY,
    "qimen_app_secret": APP_SECRET,
    "qimen_target_app_key": "erp-9",
    "qimen_customerid": "CONC_COMPANY",
    "qimen_connect_timeout": 1.0,
    "qimen_read_timeout": 1.0,
    "qimen_max_attempts": 5,
}
# A sender process: claim one job, commit, then call a gateway that never answers in time.
SENDER = """
import sys, odoo
from odoo import api, SUPERUSER_ID
odoo.tools.config.parse_config(sys.argv[1:])
registry = odoo.modules.registry.Registry(odoo.tools.config["db_name"])
with registry.cursor() as cr:
    jobs = api.Environment(cr, SUPERUSER_ID, {})["qimen.sync.job"]
    claim = jobs._transaction(lambda: jobs._claim_next(float("inf")))
    print("claimed", claim.job_id, flush=True)
    claim.send()
"""


@tagged("post_install", "-at_install")
class TestConcurrency(LoopbackRequests, BaseCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        cls.sandbox = SandboxGateway({APP_KEY: APP_SECRET}, latency=0.05, timeout_delay=30)
        cls.sandbox.start()
        cls.addClassCleanup(cls.sandbox.stop)
        cls.prefix = f"CONC-{uuid.uuid4().hex[:6]}-"
        with cls.registry.cursor() as cr:
            env = cls.env_of(cr)
            company = env.company
            cls.company_id = company.id
            cls.saved = {name: company.sudo()[name] for name in [*SETTINGS, "qimen_custom_url"]}
            company.write(dict(SETTINGS, qimen_custom_url=cls.sandbox.url))
            shop = env["pos.config"].create(
                {"name": f"{cls.prefix}shop", "qimen_customerid": "CONC_SHOP"}
            )
            session = env["pos.session"].create(
                {"config_id": shop.id, "user_id": env.ref("base.user_admin").id}
            )
            cls.config_id, cls.session_id = shop.id, session.id
        cls.addClassCleanup(cls._remove_committed_data)

    @classmethod
    def _remove_committed_data(cls):
        with cls.registry.cursor() as cr:
            remove_committed_orders(cr, cls.prefix)
            cls._heal_company(cr)
            cr.execute("DELETE FROM pos_session WHERE id = %s", [cls.session_id])
            env = cls.env_of(cr)
            env["pos.config"].browse(cls.config_id).active = False
            env["res.company"].browse(cls.company_id).write(cls.saved)

    @classmethod
    def _heal_company(cls, cr):
        """The company's breaker as new (a test paused it, committed)."""
        cr.execute(
            "DELETE FROM mail_activity WHERE res_model = 'qimen.sync.health' AND res_id IN "
            "(SELECT id FROM qimen_sync_health WHERE company_id = %s)",
            [cls.company_id],
        )
        cr.execute("DELETE FROM qimen_sync_health WHERE company_id = %s", [cls.company_id])

    # helpers ---------------------------------------------------------------------------
    def setUp(self):
        super().setUp()
        self.sandbox.clear()
        with self.registry.cursor() as cr:  # what an earlier test left waiting is not ours
            cr.execute(
                "UPDATE qimen_sync_job SET state = 'cancelled' WHERE bill_code LIKE %s "
                "AND state NOT IN ('done', 'superseded', 'cancelled')",
                [self.prefix + "%"],
            )

    @staticmethod
    def outside_test_thread(function):
        """Run ``function`` in a thread of its own, as a lane or a server would (Odoo
        flags the test thread as testing, which its own code reads)."""
        outcome = {}

        def run():
            try:
                outcome["result"] = function()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(120)
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result")

    @classmethod
    def env_of(cls, cr):
        return env_on(cls.registry, cr)

    def committed_orders(self, count, events=("confirm", "pickup")):
        """``count`` orders, each with ``events`` queued, committed."""
        with self.registry.cursor() as cr:
            env = self.env_of(cr)
            orders = env["pos.order"].create(
                [
                    {
                        "session_id": self.session_id,
                        "pos_reference": f"{self.prefix}{uuid.uuid4().hex[:8]}",
                        "amount_total": 10,
                        "amount_tax": 0,
                        "amount_paid": 10,
                        "amount_return": 0,
                    }
                    for _i in range(count)
                ]
            )
            env["pos.order"]._qimen_queue([(o, event) for o in orders for event in events])
            return [(order.id, order.qimen_bill_code) for order in orders]

    def job_states(self, bill_codes):
        with self.registry.cursor() as cr:
            cr.execute(
                "SELECT bill_code, event, state, attempts FROM qimen_sync_job "
                "WHERE bill_code IN %s ORDER BY id",
                [tuple(bill_codes)],
            )
            return cr.fetchall()

    def claim(self):
        def claim():
            with self.registry.cursor() as cr:
                jobs = self.env_of(cr)["qimen.sync.job"]
                return jobs._transaction(
                    lambda: jobs._claim_next(time.time() + 60), read_committed=True
                )

        return self.outside_test_thread(claim)

    def run_dispatchers(self, dispatchers, lanes):
        """``dispatchers`` dispatcher runs at once (as several servers would), each with
        ``lanes`` sending threads; return how many updates they sent."""
        counts = []

        def dispatcher():
            with self.registry.cursor() as cr:
                jobs = self.env_of(cr)["qimen.sync.job"]
                deadline = time.time() + 60
                counts.append(jobs._run_lanes(deadline, deadline, lanes))

        threads = [threading.Thread(target=dispatcher) for _i in range(dispatchers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        return sum(counts)

    # tests -----------------------------------------------------------------------------
    def test_lanes_and_servers_send_each_update_once_and_in_order(self):
        orders = self.committed_orders(12)
        bills = [bill for _id, bill in orders]
        in_flight, peak, lock = [0], [0], threading.Lock()
        call = QimenClient.call

        def counting_call(client, *args, **kwargs):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                return call(client, *args, **kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

        QimenClient.call = counting_call
        try:
            sent = self.run_dispatchers(dispatchers=2, lanes=3)
        finally:
            QimenClient.call = call
        self.assertEqual(sent, 24)
        self.assertEqual({state for _b, _e, state, _a in self.job_states(bills)}, {"done"})
        received = [
            (c.params["orderBillCode"], c.params["status"])
            for c in self.sandbox.calls("accepted")
            if c.params["orderBillCode"] in bills
        ]
        self.assertEqual(len(received), 24, "each update exactly once")
        self.assertEqual(set(received), {(bill, status) for bill in bills for status in "12"})
        for bill in bills:
            self.assertEqual([s for b, s in received if b == bill], ["1", "2"], bill)
        self.assertGreater(peak[0], 1, "updates of different orders went out together")

    LANE_STATEMENTS = {"_claim_next": "qimen_claim", "_record_done_and_claim": "qimen_done_claim"}

    def test_a_lane_plans_its_statements_once(self):
        """PostgreSQL plans a prepared statement again at each of its first runs, and
        for good while the table holds few jobs; a lane's claim, and its success
        recorded with the next claim, are each planned once."""
        self.committed_orders(4)
        jobs_class = self.registry["qimen.sync.job"]
        originals = {name: getattr(jobs_class, name) for name in self.LANE_STATEMENTS}
        runs = dict.fromkeys(self.LANE_STATEMENTS.values(), 0)
        plans = {}

        def recording(name):
            def method(jobs, *args, **kwargs):
                result = originals[name](jobs, *args, **kwargs)
                runs[self.LANE_STATEMENTS[name]] += 1
                jobs.env.cr.execute(
                    "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements"
                )
                plans.update((row[0], row[1:]) for row in jobs.env.cr.fetchall())
                return result

            return method

        for name in originals:
            setattr(jobs_class, name, recording(name))
        try:
            self.assertEqual(self.run_dispatchers(dispatchers=1, lanes=1), 8)
        finally:
            for name, original in originals.items():
                setattr(jobs_class, name, original)
        # 8 successes, each order's second update claimed on its own, and a last claim
        self.assertEqual(runs["qimen_done_claim"], 8)
        self.assertGreater(runs["qimen_claim"], 1)
        self.assertEqual(plans, {name: (count, 0) for name, count in runs.items()})

    def test_recording_an_outcome_never_touches_the_tills_orders(self):
        ((order_id, bill),) = self.committed_orders(1, events=("confirm",))
        claim = self.claim()
        with (
            closing(self.registry.cursor()) as till,
            closing(self.registry.cursor()) as sender,
        ):
            # the till (a session closing) writes the order and keeps its transaction open
            till_env = self.env_of(till)
            till_env["pos.order"].browse(order_id).write({"general_note": "closing"})
            till_env.flush_all()
            # the sender records a failure for good: job, chatter and a to-do; it must
            # neither wait for the till's lock nor make the till's commit fail
            sender.execute("SET lock_timeout = '2s'")
            jobs = self.env_of(sender)["qimen.sync.job"]
            with self.assertLogs(JOB_LOGGER, logging.WARNING):
                self.outside_test_thread(
                    lambda: jobs._transaction(
                        lambda: jobs._record(claim, SendResult(PERMANENT, code="41", message="bad"))
                    )
                )
            till.commit()
        self.assertEqual(self.job_states([bill])[0][2], "dead")
        with self.registry.cursor() as cr:
            order = self.env_of(cr)["pos.order"].browse(order_id)
            self.assertEqual(order.general_note, "closing")
            self.assertIn("could not be sent", order.message_ids[0].body)
            health = self.env_of(cr)["qimen.sync.health"].search(
                [("company_id", "=", self.company_id)]
            )
            self.assertIn(bill, str(health.activity_ids.note), "the managers' summary")
        with self.registry.cursor() as cr:
            self._heal_company(cr)

    def test_a_conflict_while_recording_is_retried_in_a_fresh_transaction(self):
        ((_id, bill),) = self.committed_orders(1, events=("confirm",))
        claim = self.claim()
        with closing(self.registry.cursor()) as sender:
            sender.execute("SELECT 1")  # the sender's snapshot is taken here
            with self.registry.cursor() as other:  # another transaction touches the job
                other.execute(
                    "UPDATE qimen_sync_job SET write_date = now() WHERE id = %s", [claim.job_id]
                )
            jobs = self.env_of(sender)["qimen.sync.job"]
            with self.assertLogs(JOB_LOGGER, logging.INFO) as logs:  # Odoo names 25 "INFO"
                self.outside_test_thread(
                    lambda: jobs._transaction(
                        lambda: jobs._record(claim, SendResult("success", code="1"))
                    )
                )
        self.assertTrue(any("transaction conflict" in line for line in logs.output))
        self.assertEqual(self.job_states([bill])[0][2:], ("done", 1))

    def test_a_sender_killed_mid_call_is_taken_back_when_its_lease_ends(self):
        ((_id, bill),) = self.committed_orders(1, events=("confirm",))
        self.sandbox.add_fault("slow", count=1)  # applied, answered too late
        options = [
            f"--database={get_db_name()}",
            f"--addons-path={config['addons_path']}",
            "--log-level=warn",
        ]
        for name in ("db_host", "db_port", "db_user", "db_password"):
            if config[name]:
                options.append(f"--{name}={config[name]}")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, *options], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            self.assertTrue(sender.stdout.readline().startswith("claimed"))
            for _i in range(100):  # until the call reached the gateway
                if self.sandbox.calls():
                    break
                time.sleep(0.1)
        finally:
            sender.send_signal(signal.SIGKILL)
            sender.wait(10)
        self.assertEqual(self.job_states([bill])[0][2:], ("sending", 1))
        with self.registry.cursor() as cr:
            jobs = self.env_of(cr)["qimen.sync.job"]
            self.assertFalse(jobs._reclaim_expired(), "within its lease it may still answer")
            cr.execute(
                "SELECT lease_until - sending_since FROM qimen_sync_job WHERE bill_code = %s",
                [bill],
            )
            lease = cr.fetchone()[0].total_seconds()
        self.assertEqual(lease, 2 * (1 + 2 * 1) + 10, "twice the longest call, and a margin")
        time.sleep(lease + 1)
        with self.registry.cursor() as cr, self.assertLogs(JOB_LOGGER, logging.WARNING):
            jobs = self.env_of(cr)["qimen.sync.job"]
            jobs._reclaim_expired()
            jobs.env.flush_all()
            cr.execute(
                "UPDATE qimen_sync_job SET next_attempt = next_attempt - interval '1 hour' "
                "WHERE bill_code = %s",  # as if its backoff were over
                [bill],
            )
        self.assertEqual(self.run_dispatchers(dispatchers=1, lanes=1), 1)
        self.assertEqual(self.job_states([bill])[0][2:], ("done", 2))
        statuses = [c.params["status"] for c in self.sandbox.calls("accepted")]
        self.assertEqual(statuses, ["1", "1"], "sent again: the ERP sees a repeat, not a loss")

    def test_the_till_fails_no_commit_because_of_the_dispatcher(self):
        """The other order of events: the till's transaction began before the sender
        committed, and writes the order after (what raised 'could not serialize')."""
        ((order_id, _bill),) = self.committed_orders(1, events=("confirm",))
        claim = self.claim()
        with closing(self.registry.cursor()) as till:
            till.execute("SELECT id FROM pos_order WHERE id = %s", [order_id])  # snapshot
            with self.registry.cursor() as cr:
                jobs = self.env_of(cr)["qimen.sync.job"]
                jobs._record(claim, SendResult("success", code="1"))
            try:
                self.env_of(till)["pos.order"].browse(order_id).write({"general_note": "late"})
                self.env_of(till).flush_all()
                till.commit()
            except psycopg2.errors.SerializationFailure as exc:
                self.fail(f"the dispatcher collided with the till: {exc}")

    def test_every_server_sees_a_paused_company_and_one_probes_it(self):
        """The breaker's state is the database's: a server that did not trip it takes no
        job of the paused company, and of two servers asking for a due probe at once,
        one gets it."""
        bills = [bill for _id, bill in self.committed_orders(2)]
        try:
            with self.registry.cursor() as cr:  # server A: the breaker trips, committed
                env = self.env_of(cr)
                jobs = env["qimen.sync.job"].search([("bill_code", "in", bills)])
                env["qimen.sync.health"]._locked(self.company_id)._pause(
                    "unreachable", "timeout", jobs.ids
                )

            def server_b_claims():
                with self.registry.cursor() as cr:
                    return self.env_of(cr)["qimen.sync.job"]._claim_next(time.time() + 60)

            self.assertIsNone(self.outside_test_thread(server_b_claims))
            with self.registry.cursor() as cr:
                cr.execute(
                    "UPDATE qimen_sync_health SET next_probe = now() AT TIME ZONE 'UTC' "
                    "- interval '1 second' WHERE company_id = %s",
                    [self.company_id],
                )
            probes = {}
            with self.registry.cursor() as cr_a:
                probes["a"] = self.env_of(cr_a)["qimen.sync.health"]._probes_due()

                def server_b_probes():
                    with self.registry.cursor() as cr_b:  # A's probe is not committed yet
                        return self.env_of(cr_b)["qimen.sync.health"]._probes_due()

                probes["b"] = self.outside_test_thread(server_b_probes)
            probes["b, after A's commit"] = self.outside_test_thread(server_b_probes)
            self.assertEqual(
                probes,
                {"a": [self.company_id], "b": [], "b, after A's commit": []},
                "one probe, and B never waits for A",
            )
            self.assertEqual({state for _b, _e, state, _a in self.job_states(bills)}, {"pending"})
        finally:
            with self.registry.cursor() as cr:
                self._heal_company(cr)

    def test_the_cron_threads_are_woken_after_commit(self):
        """A till's commit queues the dispatcher's trigger; the cron threads (listening on
        the 'postgres' database, as Odoo's do) are woken by the waker's own thread."""
        from odoo.sql_db import db_connect

        from ..dispatch.waker import CRON_WAKER

        with closing(db_connect("postgres").cursor()) as listener:
            listener.execute("LISTEN cron_trigger")
            listener.commit()
            with self.registry.cursor() as cr:
                jobs = self.env_of(cr)["qimen.sync.job"]
                jobs._create_dispatch_trigger()
                self.assertTrue(cr.postcommit.data.get(WAKE_KEY))
            connection = listener._cnx
            for _i in range(50):
                connection.poll()
                if connection.notifies:
                    break
                time.sleep(0.1)
            payloads = [notify.payload for notify in connection.notifies]
        self.assertIn(get_db_name(), payloads)
        self.assertTrue(CRON_WAKER._thread.daemon)

    def test_a_run_ends_in_time_and_leaves_a_slow_call_behind(self):
        """Whatever the gateway does, the cron thread returns at the end of its run: a
        lane still waiting for the gateway is left behind and records its outcome later."""
        ((_id, bill),) = self.committed_orders(1, events=("confirm",))
        self.sandbox.add_fault("slow", count=1)  # answers after 30 s: the 1 s read times out

        def run():
            with self.registry.cursor() as cr:
                jobs = self.env_of(cr)["qimen.sync.job"]
                now = time.time()
                return jobs._run_lanes(now + 0.2, now + 0.2, 1)

        with self.assertLogs(JOB_LOGGER, logging.WARNING) as logs:
            self.assertEqual(self.outside_test_thread(run), 0, "the run did not wait for it")
            for _i in range(100):
                if self.job_states([bill])[0][2] != "sending":
                    break
                time.sleep(0.1)
        self.assertIn("still waiting for the gateway", logs.output[0])
        self.assertEqual(self.job_states([bill])[0][2:], ("failed", 1))
