# pylint: disable=print-used
"""Two Odoo servers on one database, as a chain scales out, against one.

Real servers (an odoo-bin style launcher, threaded, one cron thread each), the dispatcher
run by their cron threads as in production: *Parallel Senders* 8, *Dispatch Runs at
Once* 1 with one server and 2 with two (a cron runs on one server at a time; see
models/qimen_dispatch_runs.py). Each round commits the same number of due updates (two
per order), asks the dispatcher's crons to run (the trigger and NOTIFY a till's commit
makes), and times until none waits. The sandbox gateway (200 ms) counts what it received:
an update received twice is counted, and so are the jobs sent again after their lease ran
out (the only cause allowed). Run through bench/run.
"""

import argparse
import os
import statistics
import time
from collections import Counter

import common
import requests
from common import figure, gateway
from outbound import configure, payloads, queue

import odoo
from odoo import SUPERUSER_ID, api


def start_server(config, database, port):
    """An Odoo server with one cron thread on ``port``, its log next to the
    configuration."""
    log = os.path.join(os.path.dirname(config), f"bench-server-{port}.log")
    return common.start_server(
        config, database, port, ["--max-cron-threads=1", "--log-level=info"], log=log
    )


def set_runs(registry, runs):
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["qimen.sync.job"]._set_dispatch_runs(runs)


def drain(registry, company_id, url, count, timeout=900):
    """Queue ``count`` due updates, wake the dispatcher's crons, and wait until none
    waits; return (updates/s, updates received twice, jobs sent again after their
    lease, order inversions)."""
    requests.delete(f"{url.rsplit('/router', 1)[0]}/_sandbox/requests", timeout=30)
    queue(registry, company_id, payloads(count))
    with registry.cursor() as cr:
        cr.execute("ANALYZE qimen_sync_job")
        started = time.perf_counter()
        api.Environment(cr, SUPERUSER_ID, {})["qimen.sync.job"]._create_dispatch_trigger()
    # committed: the servers' cron threads are woken after the commit
    deadline = time.time() + timeout
    while True:
        with registry.cursor() as cr:
            cr.execute(
                "SELECT count(*) FROM qimen_sync_job WHERE state IN ('pending', 'failed', "
                "'sending')"
            )
            if not cr.fetchone()[0]:
                break
        if time.time() > deadline:
            raise SystemExit(f"the servers did not send {count} updates in {timeout} s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    with registry.cursor() as cr:
        cr.execute("SELECT state, count(*), sum(attempts - 1) FROM qimen_sync_job GROUP BY state")
        rows = {state: (number, again) for state, number, again in cr.fetchall()}
        assert set(rows) == {"done"} and rows["done"][0] == count, rows
        retaken = rows["done"][1]
        cr.execute("DELETE FROM qimen_sync_job")
    calls = requests.get(f"{url.rsplit('/router', 1)[0]}/_sandbox/requests", timeout=60).json()
    received = Counter()
    inversions, seen = 0, {}
    for call in calls:
        if call["verdict"] != "accepted":
            continue
        bill, status = call["params"]["orderBillCode"], call["params"]["status"]
        received[bill, status] += 1
        if status == "1" and seen.get(bill) == "2":
            inversions += 1
        seen[bill] = status
    assert len(received) == count, (len(received), count)
    twice = sum(number - 1 for number in received.values())
    return count / elapsed, twice, retaken, inversions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    url, latency = gateway("slow")
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    registry = odoo.modules.registry.Registry(args.database)
    company_id = configure(registry, url, lanes=args.lanes)
    port = int(os.environ["POS_QIMEN_BENCH_HTTP_PORT"])
    first = start_server(args.config, args.database, port)
    rates = {1: [], 2: []}
    counts = Counter()
    try:
        for round_ in range(args.rounds):  # one, two, two, one...: drifts hit both
            for servers in (1, 2) if round_ % 2 == 0 else (2, 1):
                set_runs(registry, servers)
                second = servers == 2 and start_server(args.config, args.database, port + 1)
                try:
                    rate, twice, retaken, inversions = drain(
                        registry, company_id, url, args.updates
                    )
                finally:
                    if second:
                        second.terminate()
                        second.wait(60)
                rates[servers].append(rate)
                counts["twice"] += twice
                counts["retaken"] += retaken
                counts["inversions"] += inversions
                print(
                    f"  {servers} server(s): {rate:6.1f} updates/s, {twice} received twice, "
                    f"{retaken} sent again after a lease, {inversions} out of order"
                )
    finally:
        first.terminate()
        first.wait(60)
        set_runs(registry, 1)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(
        f"{args.updates} updates over {args.updates // 2} orders, {args.lanes} lanes per "
        f"server, {latency * 1000:.0f} ms gateway, median of {args.rounds} rounds per side: "
        f"one server {one:.1f}/s, two servers {two:.1f}/s; received twice "
        f"{counts['twice']}, sent again after a lease ran out {counts['retaken']}, "
        f"out of order {counts['inversions']}"
    )
    assert counts["twice"] <= counts["retaken"], "an update was sent twice within its lease"
    assert not counts["inversions"], "an order's updates went out of order"
    figure(
        "two servers vs one, updates/s",
        f"{latency * 1000:.0f} ms gateway, {args.lanes} lanes per server, {args.updates} "
        f"updates; received twice {counts['twice']}, all after a lease ran out",
        "two servers",
        two,
        "one server",
        one,
        ">= 1.8",
    )


if __name__ == "__main__":
    main()
