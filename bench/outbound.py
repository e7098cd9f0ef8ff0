# pylint: disable=print-used
"""Outbound throughput and the due-job scan, measured side by side in one run.

- the dispatcher (lanes with their own cursors, claims, leases, recorded outcomes) against
  a raw client sending the same payloads with as many threads, through the same sandbox
  gateway (a separate process with a set latency);
- the due-job scan (the claim's query) with a million finished jobs in the table and
  without.

Run through bench/run; it prints human lines and ``@figure`` lines that bench/run tabulates.
"""

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import figure, gateway, outside_transaction

import odoo
from odoo import SUPERUSER_ID, api, fields
from odoo.tools import SQL

APP_KEY, SECRET = "bench-app", "bench-secret"


def payloads(count):
    """``count`` updates over count/2 orders (paid, then picked up), as the POS makes them."""
    now = fields.Datetime.now()
    result = []
    for index in range(count // 2):
        bill = f"BENCH-{time.time_ns() % 10**9}-{index:05d}"
        for status, extra in (("1", {"confirm": "1"}), ("2", {"confirm": "1", "delivery": "1"})):
            result.append(
                {
                    "orderBillCode": bill,
                    "status": status,
                    "customerid": "BENCH_SHOP",
                    "confirmor": "收银员",
                    "confirmDate": now,
                    **extra,
                    "extendProps": '{"event":"bench","shop":"门店"}',
                }
            )
    for payload in result:
        payload["confirmDate"] = fields.Datetime.to_string(payload["confirmDate"])
    return result


def raw_client(url, items, threads):
    """Updates/s of a plain client: validate, sign, send, parse; ``threads`` at once."""
    from odoo.addons.pos_qimen_sync.qimen import QimenClient  # importable once configured

    client = QimenClient(url, APP_KEY, SECRET, target_app_key="bench-erp")

    def send(payload):
        result = client.salesorder_update(payload)
        assert result.ok, result.describe()

    started = time.perf_counter()
    if threads == 1:
        for payload in items:
            send(payload)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(send, items))
    return len(items) / (time.perf_counter() - started)


def queue(registry, company_id, items, due=True):
    """Commit ``items`` as pending jobs of ``company_id``, due a minute ago (or in an
    hour)."""
    event = {"1": "confirm", "2": "pickup"}
    with registry.cursor() as cr:
        for start in range(0, len(items), 5000):
            rows = SQL(", ").join(
                SQL(
                    "(%s, %s, %s, %s, %s::jsonb, 'pending', 0, now() AT TIME ZONE 'UTC' + "
                    "%s * interval '1 minute', false)",
                    company_id,
                    p["orderBillCode"],
                    event[p["status"]],
                    p["status"],
                    json.dumps(p),
                    -1 if due else 60,
                )
                for p in items[start : start + 5000]
            )
            cr.execute(
                SQL(
                    "INSERT INTO qimen_sync_job (company_id, bill_code, event, status, "
                    "payload, state, attempts, next_attempt, dead_notified) VALUES %s",
                    rows,
                )
            )


def configure(registry, url, lanes=None):
    """The main company sends to the sandbox at ``url`` (the database's lanes set to
    ``lanes``), its queue empty; return its id."""
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        company = env.ref("base.main_company")
        company.write(
            {
                "qimen_enabled": True,
                "qimen_gateway": "custom",
                "qimen_custom_url": url,
                "qimen_app_key": APP_KEY,
                "qimen_app_secret": SECRET,
                "qimen_target_app_key": "bench-erp",
                "qimen_customerid": "BENCH",
            }
        )
        if lanes:
            env["ir.config_parameter"].set_param("pos_qimen_sync.lanes", str(lanes))
        cr.execute("DELETE FROM qimen_sync_job")
        return company.id


def dispatcher(registry, company_id, items, lanes):
    """Updates/s of the dispatcher: the same payloads queued as jobs, then sent by
    ``lanes`` lanes until none is due (what one cron run does)."""
    queue(registry, company_id, items)
    with registry.cursor() as cr:
        # the table's statistics, as autovacuum keeps them in a live database: without,
        # the planner takes a table just filled with hundreds of jobs for an empty one
        cr.execute("ANALYZE qimen_sync_job")
        jobs = api.Environment(cr, SUPERUSER_ID, {})["qimen.sync.job"]
        lease = jobs._lease_seconds()
        cr.commit()  # no snapshot held while the lanes work
        started = time.perf_counter()
        deadline = time.time() + 600
        sent = jobs._run_lanes(deadline, deadline, lanes, lease)
        elapsed = time.perf_counter() - started
        cr.execute("SELECT state, count(*) FROM qimen_sync_job GROUP BY state")
        states = dict(cr.fetchall())
        assert sent == len(items) and set(states) == {"done"}, (sent, states)
        cr.execute("DELETE FROM qimen_sync_job")
    return len(items) / elapsed


def scan_ms(registry, company_id, finished, pending=1000, repeat=1000):
    """Median milliseconds of ``repeat`` claims' due-job scans, as a lane runs it (a
    statement prepared once on a connection set up as a lane's; each run rolled back),
    timed by the server (EXPLAIN ANALYZE's execution time, without per-node timing), on
    two tables that differ only by ``finished`` done/superseded/cancelled jobs: the
    module's own, and a copy of it without them (same columns and indexes) in a schema of
    its own, which a second connection finds first on its search path. The two sides are
    sampled in turn, so that whatever the machine does meanwhile (the fill's checkpoint,
    another process) hits both."""
    fill(registry, company_id, pending, finished)
    with registry.cursor() as cr:
        cr.execute("DROP SCHEMA IF EXISTS bench_empty CASCADE")
        cr.execute("CREATE SCHEMA bench_empty")
        cr.execute(
            "CREATE TABLE bench_empty.qimen_sync_job (LIKE public.qimen_sync_job INCLUDING ALL)"
        )
        cr.execute(
            "INSERT INTO bench_empty.qimen_sync_job SELECT * FROM public.qimen_sync_job "
            "WHERE state IN ('pending', 'failed')"
        )
    outside_transaction(registry, "VACUUM ANALYZE bench_empty.qimen_sync_job", "CHECKPOINT")
    from odoo.addons.pos_qimen_sync.dispatch.lanes import set_up_lane_connection
    from odoo.addons.pos_qimen_sync.dispatch.queue_sql import due_query

    times = {"full": [], "empty": []}
    with registry.cursor() as full, registry.cursor() as empty:
        try:
            for cr in (full, empty):
                set_up_lane_connection(cr)
                if cr is empty:
                    cr.execute("SET search_path TO bench_empty, public")
                scan = SQL("%s LIMIT 1 FOR UPDATE OF job SKIP LOCKED", due_query(SQL("$1")))
                cr.execute(SQL("PREPARE due_scan(timestamp) AS %s", SQL(cr.mogrify(scan).decode())))
                cr.commit()
            for index in range(2 * repeat):
                side = ("full", "empty")[index % 2]
                cr = full if side == "full" else empty
                # the server's execution time (its row locked, as a claim does): the
                # client's round trip, a few times longer, would hide the scan's cost
                cr.execute(
                    "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) EXECUTE due_scan(%s)",
                    [fields.Datetime.now()],
                )
                (plan,) = cr.fetchone()[0]
                assert plan["Plan"]["Actual Rows"] == 1, plan
                times[side].append(plan["Execution Time"])
                cr.rollback()
            for cr in (full, empty):
                cr.execute("DEALLOCATE due_scan")
        finally:
            empty.rollback()
            empty.execute("RESET search_path")  # the pool resets the rest
            empty.execute("DROP SCHEMA bench_empty CASCADE")
            empty.commit()
    return statistics.median(times["full"]), statistics.median(times["empty"])


def fill(registry, company_id, pending, finished):
    """``pending`` due jobs, and ``finished`` done/superseded/cancelled ones. The table's
    indexes (but its primary key) are dropped for the fill and built again after from
    their own definitions, as a REINDEX leaves them: minutes rather than a quarter of an
    hour for 10 million rows on two cores."""
    with registry.cursor() as cr:
        cr.execute("TRUNCATE qimen_sync_job")
        cr.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'qimen_sync_job' "
            "AND indexname != 'qimen_sync_job_pkey'"
        )
        indexes = cr.fetchall()
        for name, _definition in indexes:
            cr.execute(SQL("DROP INDEX %s", SQL.identifier(name)))
        cr.execute(
            """INSERT INTO qimen_sync_job (company_id, bill_code, event, status, payload, state,
                   attempts, next_attempt, dead_notified, date_done, write_date, create_date)
               SELECT %(company)s, 'OLD-' || (i / 3),
                      (ARRAY['confirm', 'pickup', 'complete'])[i %% 3 + 1], '1', '{}'::jsonb,
                      (ARRAY['done', 'done', 'done', 'superseded', 'cancelled'])[i %% 5 + 1],
                      1, NULL, false, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
                      now() AT TIME ZONE 'UTC'
                 FROM generate_series(1, %(finished)s) AS i""",
            {"company": company_id, "finished": finished},
        )
        cr.execute(
            """INSERT INTO qimen_sync_job (company_id, bill_code, event, status, payload, state,
                   attempts, next_attempt, dead_notified)
               SELECT %(company)s, 'DUE-' || i, 'confirm', '1', '{}'::jsonb, 'pending', 0,
                      now() AT TIME ZONE 'UTC' - interval '1 minute', false
                 FROM generate_series(1, %(pending)s) AS i""",
            {"company": company_id, "pending": pending},
        )
        cr.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for _name, definition in indexes:
            cr.execute(definition)
    outside_transaction(registry, "VACUUM ANALYZE public.qimen_sync_job")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--updates", type=int, default=3000, help="per round, lanes")
    parser.add_argument("--sequential", type=int, default=600, help="per round, one lane")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--finished", type=int, default=10_000_000)
    args = parser.parse_args()
    url, latency = gateway("fast")
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    registry = odoo.modules.registry.Registry(args.database)
    threading.current_thread().dbname = args.database
    company_id = configure(registry, url)

    runs = {"raw 1": [], "dispatcher 1": [], "raw N": [], "dispatcher N": []}
    for _round in range(args.rounds):  # interleaved, so that drifts hit both sides
        items = payloads(args.sequential)
        runs["raw 1"].append(raw_client(url, items, 1))
        runs["dispatcher 1"].append(dispatcher(registry, company_id, payloads(args.sequential), 1))
        items = payloads(args.updates)
        runs["raw N"].append(raw_client(url, items, args.threads))
        runs["dispatcher N"].append(
            dispatcher(registry, company_id, payloads(args.updates), args.threads)
        )
    rate = {name: statistics.median(values) for name, values in runs.items()}
    n = args.threads
    print(
        f"outbound, {args.updates} updates over {args.updates // 2} orders with {args.threads} "
        f"lanes or threads, {args.sequential} with one, median of {args.rounds} rounds"
    )
    for name, value in rate.items():
        print(f"  {name.replace('N', str(n)):14}  {value:7.1f} updates/s")
    conditions = f"{latency * 1000:.0f} ms gateway, {{}} updates a round, median of {args.rounds}"
    figure(
        f"dispatcher ({n} lanes) vs raw {n}-thread client, updates/s",
        conditions.format(args.updates),
        "dispatcher",
        rate["dispatcher N"],
        "raw client",
        rate["raw N"],
        ">= 0.95",
    )
    figure(
        "dispatcher (1 lane) vs raw sequential client, updates/s",
        conditions.format(args.sequential),
        "dispatcher",
        rate["dispatcher 1"],
        "raw client",
        rate["raw 1"],
        ">= 0.95",
    )

    full, empty = scan_ms(registry, company_id, args.finished)
    print(f"due-job scan, 1000 due: {empty:.3f} ms without finished jobs")
    print(f"due-job scan, 1000 due: {full:.3f} ms with {args.finished:,} finished jobs")
    figure(
        f"due-job scan, {args.finished:,} finished jobs vs none, ms",
        "1,000 due jobs; p50 of 1,000 claims per side, alternating, timed by the server",
        f"{args.finished:,} finished",
        full,
        "none",
        empty,
        "<= 1.2",
    )
    with registry.cursor() as cr:
        # the fill's rows go with their pages: a DELETE would leave the benchmarks after
        # this one a table of gigabytes (the till's hook inserts into it)
        cr.execute("TRUNCATE qimen_sync_job")


if __name__ == "__main__":
    main()
