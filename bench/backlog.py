# pylint: disable=print-used
"""A long backlog: 20,000 updates queued while the gateway was out, then drained.

The gateway back (the sandbox at 200 ms), the backlog is drained by one dispatcher run
with 32 lanes (the most *Parallel Senders* allows), against a raw client sending the same
payloads with 32 threads. Meanwhile a connection of its own times the lanes' due-job scan
(the claim's query, prepared as a lane prepares it, rolled back) every 20 ms, to show
whether it stays flat as the table fills with sent jobs, and counts the database's
connections, to set against ``db_maxconn``. Run through bench/run.
"""

import argparse
import statistics
import threading
import time

from common import figure, gateway, outside_transaction
from outbound import configure, payloads, queue, raw_client

import odoo
from odoo import SUPERUSER_ID, api, fields
from odoo.tools import SQL


class ScanWatch(threading.Thread):
    """Times the due-job scan and counts connections to the database until stopped;
    each sample with how many jobs were still waiting."""

    def __init__(self, registry):
        super().__init__(daemon=True)
        self.registry, self.samples, self.connections = registry, [], 0
        self.stopped = threading.Event()

    def run(self):
        from odoo.addons.pos_qimen_sync.dispatch.lanes import set_up_lane_connection
        from odoo.addons.pos_qimen_sync.dispatch.queue_sql import due_query

        with self.registry.cursor() as cr:
            set_up_lane_connection(cr)
            scan = SQL("%s LIMIT 1 FOR UPDATE OF job SKIP LOCKED", due_query(SQL("$1")))
            cr.execute(SQL("PREPARE watch_scan(timestamp) AS %s", SQL(cr.mogrify(scan).decode())))
            cr.commit()
            while not self.stopped.wait(0.02):
                started = time.perf_counter()
                cr.execute("EXECUTE watch_scan(%s)", [fields.Datetime.now()])
                found = cr.fetchone()
                elapsed = (time.perf_counter() - started) * 1000
                cr.rollback()
                cr.execute(
                    "SELECT count(*) FILTER (WHERE state IN ('pending', 'failed')), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) "
                    "FROM qimen_sync_job"
                )
                waiting, connections = cr.fetchone()
                cr.rollback()
                self.connections = max(self.connections, connections)
                if found:
                    self.samples.append((waiting, elapsed))
            cr.execute("DEALLOCATE watch_scan")


def drain(registry, company_id, items, lanes):
    """Updates/s of one dispatcher run with ``lanes`` lanes on ``items`` queued as due
    jobs; the scan's samples; the most connections seen."""
    queue(registry, company_id, items)
    # as autovacuum leaves a table at rest
    outside_transaction(registry, "VACUUM ANALYZE qimen_sync_job")
    watch = ScanWatch(registry)
    with registry.cursor() as cr:
        jobs = api.Environment(cr, SUPERUSER_ID, {})["qimen.sync.job"]
        lease = jobs._lease_seconds()
        cr.commit()
        watch.start()
        started = time.perf_counter()
        deadline = time.time() + 1800
        sent = jobs._run_lanes(deadline, deadline, lanes, lease)
        elapsed = time.perf_counter() - started
        watch.stopped.set()
        watch.join()
        cr.execute("SELECT state, count(*) FROM qimen_sync_job GROUP BY state")
        states = dict(cr.fetchall())
        assert sent == len(items) and set(states) == {"done"}, (sent, states)
        cr.execute("DELETE FROM qimen_sync_job")
    return len(items) / elapsed, watch.samples, watch.connections


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--lanes", type=int, default=32)
    args = parser.parse_args()
    url, latency = gateway("slow")
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    registry = odoo.modules.registry.Registry(args.database)
    company_id = configure(registry, url)
    items = payloads(args.updates)
    raw = raw_client(url, items, args.lanes)
    ours, samples, connections = drain(registry, company_id, payloads(args.updates), args.lanes)
    full = [ms for waiting, ms in samples if waiting > args.updates * 3 // 4]
    low = [ms for waiting, ms in samples if waiting < args.updates // 4]
    scan_full, scan_low = statistics.median(full), statistics.median(low)
    maxconn = odoo.tools.config["db_maxconn"]
    print(
        f"backlog of {args.updates:,} updates over {args.updates // 2:,} orders, "
        f"{latency * 1000:.0f} ms gateway: dispatcher ({args.lanes} lanes) {ours:.1f}/s, "
        f"raw {args.lanes}-thread client {raw:.1f}/s"
    )
    print(
        f"  due-job scan while it drained (p50): {scan_full:.3f} ms with over 3/4 waiting "
        f"({len(full)} samples), {scan_low:.3f} ms with under 1/4 ({len(low)} samples)"
    )
    print(
        f"  database connections: {connections} at most (the {args.lanes} lanes, the run's "
        f"own cursor and this benchmark's two), against db_maxconn {maxconn} per server"
    )
    figure(
        f"backlog of {args.updates:,} updates, dispatcher ({args.lanes} lanes) vs raw "
        f"{args.lanes}-thread client, updates/s",
        f"{latency * 1000:.0f} ms gateway; scan p50 {scan_full:.2f} ms full, "
        f"{scan_low:.2f} ms nearly drained; {connections} connections of db_maxconn {maxconn}",
        "dispatcher",
        ours,
        "raw client",
        raw,
        ">= 0.9",
    )


if __name__ == "__main__":
    main()
