# pylint: disable=print-used
"""The reconciliation report at scale: does the manager's morning question (one shop,
yesterday, by sync state) read only the jobs of that shop's orders of yesterday, however
many jobs the table holds?

Fills a scratch database (with the addon installed: give a copy, it is changed for good)
with orders over shops and days and about five jobs each (a million by default: acknowledged,
superseded, some waiting or dead), in SQL, then runs the report's read_group calls as the
pivot does, prints their time and EXPLAIN (ANALYZE) of the first, and checks in the plan
that the job table was read through its order index only, for the selected orders.
Not part of bench/run:

    python3 bench/report.py -c odoo.conf -d scratch_db [--orders 200000]
"""

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta

import odoo
from odoo import SUPERUSER_ID, api
from odoo.tools import SQL

PREFIX = "BENCH-RPT-"
REPORT = "qimen.sync.report"


def env_of(cr):
    env = api.Environment(cr, SUPERUSER_ID, {})
    return env(user=env.ref("base.user_admin"))


def fill(registry, orders, shops, days):
    """``orders`` orders over ``shops`` shops and ``days`` days, five jobs each: the
    confirmation (1 in 97 dead, 1 in 97 pending), pick-up and completion acknowledged,
    and two superseded confirmations. Committed; skipped when already there."""
    with registry.cursor() as cr:
        env = env_of(cr)
        configs = env["pos.config"].search([("name", "=like", PREFIX + "%")])
        if configs:
            return configs.ids
        company = env.company
        for index in range(shops):
            config = env["pos.config"].create({"name": f"{PREFIX}shop{index}"})
            env["pos.session"].create({"config_id": config.id, "user_id": env.uid})
            configs |= config
        sessions = [config.session_ids[0].id for config in configs]
        env.flush_all()
        today = datetime.combine(datetime.now().date(), datetime.min.time())
        cr.execute(
            SQL(
                """INSERT INTO pos_order
                       (company_id, session_id, config_id, name, pos_reference, qimen_bill_code,
                        date_order, state, amount_tax, amount_total, amount_paid, amount_return,
                        qimen_confirm, qimen_delivery, qimen_finished, create_date, write_date)
                   SELECT %(company)s, s.id, s.config_id, %(prefix)s || g, %(prefix)s || g,
                          %(prefix)s || g,
                          %(today)s - mod(g / %(shops)s, %(days)s) * interval '1 day'
                              + mod(g, 86400) * interval '1 second',
                          'done', 0, 10, 10, 0, '2', '1', true, now(), now()
                     FROM generate_series(1, %(orders)s) g
                     JOIN pos_session s ON s.id = (%(sessions)s)[1 + mod(g, %(shops)s)]""",
                company=company.id,
                prefix=PREFIX,
                today=today,
                days=days,
                orders=orders,
                sessions=sessions,
                shops=shops,
            )
        )
        cr.execute(
            SQL(
                """INSERT INTO qimen_sync_job
                       (company_id, order_id, config_id, bill_code, event, status, state,
                        attempts, date_done, dead_notified, create_date, write_date)
                   SELECT o.company_id, o.id, o.config_id, o.qimen_bill_code, j.event, j.status,
                          s.state, 1,
                          CASE WHEN s.state = 'done' THEN o.date_order + interval '1 minute' END,
                          false, now(), now()
                     FROM pos_order o
                    CROSS JOIN (VALUES ('confirm', '1', false), ('confirm', '1', false),
                                       ('confirm', '1', true), ('pickup', '2', true),
                                       ('complete', '1', true)) AS j(event, status, live)
                    CROSS JOIN LATERAL (
                        SELECT CASE WHEN NOT j.live THEN 'superseded'
                                    WHEN j.event = 'confirm' AND mod(o.id, 97) = 0 THEN 'dead'
                                    WHEN j.event = 'confirm' AND mod(o.id, 97) = 1 THEN 'pending'
                                    ELSE 'done' END AS state
                    ) AS s
                    WHERE o.config_id IN %(configs)s""",
                configs=tuple(configs.ids),
            )
        )
        cr.commit()
        cr.execute("ANALYZE pos_order")
        cr.execute("ANALYZE qimen_sync_job")
        return configs.ids


@contextmanager
def captured_queries(cr):
    """The SQL statements run in the block (to EXPLAIN what the ORM ran)."""
    queries, execute = [], cr.execute

    def recording_execute(query, params=None, log_exceptions=True):
        if isinstance(query, SQL):
            queries.append(query)
        return execute(query, params, log_exceptions)

    cr.execute = recording_execute
    try:
        yield queries
    finally:
        cr.execute = execute


def plan_nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def timed(env, runs, call):
    """Median seconds of ``runs`` calls, the result and the report's query of the last."""
    seconds = []
    for _run in range(runs):
        env.invalidate_all()
        begin = time.perf_counter()
        with captured_queries(env.cr) as queries:
            result = call()
        seconds.append(time.perf_counter() - begin)
    query = next(q for q in queries if "qimen_sync_report" in q.code)
    return statistics.median(seconds), result, query


def jobs_read(cr, query, their_jobs):
    """Print EXPLAIN ANALYZE of ``query``; say whether it read the job table through the
    order index only, and only the jobs of its orders (``their_jobs``) once per LATERAL."""
    cr.execute(SQL("EXPLAIN (ANALYZE, COSTS OFF) %s", query))
    print("\n".join(row[0] for row in cr.fetchall()))
    cr.execute(SQL("EXPLAIN (ANALYZE, FORMAT JSON) %s", query))
    plan = cr.fetchone()[0][0]["Plan"]
    scans = [node for node in plan_nodes(plan) if node.get("Relation Name") == "qimen_sync_job"]
    read = sum(node["Actual Rows"] * node["Actual Loops"] for node in scans)
    by_order_index = all(
        node["Node Type"] == "Index Scan" and node["Index Name"] == "qimen_sync_job__order_id_index"
        for node in scans
    )
    only_theirs = read == len(scans) * their_jobs
    print(
        f"jobs read: {read:,} in {len(scans)} LATERAL subqueries, for orders with "
        f"{their_jobs:,} jobs; through the order index only: {'yes' if by_order_index else 'NO'}"
        f"; only their jobs: {'yes' if only_theirs else 'NO'}\n"
    )
    return by_order_index and only_theirs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--shops", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    registry = odoo.modules.registry.Registry(args.database)
    started = time.perf_counter()
    config_ids = fill(registry, args.orders, args.shops, args.days)
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM qimen_sync_job")
        print(f"{cr.fetchone()[0]:,} jobs in the table ({time.perf_counter() - started:.0f} s)")
        env = env_of(cr)
        report = env[REPORT]
        today = datetime.combine(datetime.now().date(), datetime.min.time())
        yesterday = [("date", ">=", today - timedelta(days=1)), ("date", "<", today)]
        one_shop = [("config_id", "=", config_ids[0]), *yesterday]
        list_fields = [name for name in report._fields if not name.startswith(("__", "display"))]
        calls = {
            "pivot: one shop, yesterday, by sync state": lambda: report.read_group(
                one_shop, ["nbr:sum"], ["sync_state"], lazy=False
            ),
            "list: one shop, yesterday, every column": lambda: report.search_read(
                one_shop, list_fields
            ),
            "pivot: every shop, yesterday, by shop and sync state": lambda: report.read_group(
                yesterday, ["nbr:sum"], ["config_id", "sync_state"], lazy=False
            ),
            "pivot: every shop, every day, by shop and sync state": lambda: report.read_group(
                [], ["nbr:sum"], ["config_id", "sync_state"], lazy=False
            ),
        }
        queries = {}
        for name, call in calls.items():
            seconds, result, queries[name] = timed(env, args.runs, call)
            rows = sum(g["__count"] for g in result) if name.startswith("pivot") else len(result)
            print(f"{name}: {rows:,} orders, {seconds * 1000:.1f} ms (median of {args.runs})")
        order_ids = report.search(one_shop).order_id.ids
        cr.execute("SELECT count(*) FROM qimen_sync_job WHERE order_id = ANY(%s)", [order_ids])
        their_jobs = cr.fetchone()[0]
        print(f"\none shop, yesterday: {len(order_ids):,} orders with {their_jobs:,} jobs\n")
        fine = [jobs_read(cr, queries[name], their_jobs) for name in list(calls)[:2]]
    return 0 if all(fine) else 1


if __name__ == "__main__":
    sys.exit(main())
