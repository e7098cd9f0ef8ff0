# pylint: disable=print-used
"""The dispatcher against OCA queue_job, the ecosystem's job queue, in one run.

The same updates (two per order: paid, then picked up) go through the same sandbox gateway,
at its 20 ms and at its 200 ms latency:

- our dispatcher: the updates committed as due ``qimen.sync.job`` rows, sent by 8 lanes
  (bench/outbound.py's ``dispatcher``), each order's updates one after the other;
- queue_job 18.0: the updates committed as jobs (``with_delay()`` of
  bench/peers/bench_queue_job, which sends one update with the company's client), run by
  queue_job's job runner in an Odoo server of their own (threaded, ``workers = 0``,
  ``server_wide_modules = base,web,queue_job``, channel ``root:8``) on a copy of the
  database, dropped after.

Each side is timed from "all committed as due" to "all done", in alternating rounds; the
sandbox's record of what it received shows that every update arrived, and in which order.
Also printed, per update on each side: the time a lane (a channel place) spends beyond
the gateway's latency, the queries (queue_job's in its runjob requests, from the server's
request log), the writing transactions and the Odoo process's CPU; queue_job's enqueue
cost and set-up time, and how many orders it sent out of order (status 2 before status 1).

queue_job is not a dependency of the addon: bench/run installs it with pip into the state
folder and passes its addons folder in POS_QIMEN_BENCH_PEERS. Run through bench/run, or:

    POS_QIMEN_BENCH_PEERS=<folder holding queue_job> POS_QIMEN_BENCH_FAST_URL=... \\
      python3 bench/queue_job.py -c <odoo.conf> -d <database>
"""

import argparse
import configparser
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

import requests
from common import LAUNCHER, figure, gateway, start_server
from outbound import configure, dispatcher, payloads

import odoo
from odoo import SUPERUSER_ID, api

HERE = os.path.dirname(os.path.abspath(__file__))
# the werkzeug line of a runjob request ends with Odoo's query count, query time and
# remaining time (odoo.netsvc.PerfFilter)
RUNJOB_LINE = re.compile(r"GET /queue_job/runjob\?\S+ HTTP/[\d.]+\" 200 - (\d+) ([\d.]+) ([\d.]+)")


def peer_config(conf, peers, port, capacity, folder):
    """The Odoo configuration of the queue_job side: the benchmark's, plus queue_job and the
    bench peer addon on the addons path, queue_job loaded server-wide (its job runner
    runs in the threaded server), and one channel of capacity ``capacity``."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(conf)
    options = parser["options"]
    options["addons_path"] = ",".join(
        [os.path.join(HERE, "peers"), peers, options.get("addons_path", "")]
    )
    options["server_wide_modules"] = "base,web,queue_job"
    options["workers"] = "0"
    options["max_cron_threads"] = "0"
    options["http_interface"] = "127.0.0.1"
    options["http_port"] = str(port)
    parser["queue_job"] = {"channels": f"root:{capacity}", "host": "127.0.0.1", "port": str(port)}
    path = os.path.join(folder, "queue_job.conf")
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path, options["addons_path"]


def copy_database(source, target):
    """``target``, a copy of ``source`` (nobody may be connected to it) and its filestore."""
    db = odoo.sql_db.db_connect("postgres")
    with db.cursor() as cr:
        cr._cnx.autocommit = True
        cr.execute(f'DROP DATABASE IF EXISTS "{target}"')
        cr.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    odoo.sql_db.close_db("postgres")
    filestore = odoo.tools.config.filestore(source)
    if os.path.isdir(filestore):
        shutil.copytree(filestore, odoo.tools.config.filestore(target), dirs_exist_ok=True)


def drop_database(name):
    odoo.modules.registry.Registry.delete(name)
    odoo.sql_db.close_db(name)
    db = odoo.sql_db.db_connect("postgres")
    with db.cursor() as cr:
        cr._cnx.autocommit = True
        cr.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    odoo.sql_db.close_db("postgres")
    shutil.rmtree(odoo.tools.config.filestore(name), ignore_errors=True)


def odoo_command(folder, conf, database, *args, log=None):
    launcher = os.path.join(folder, "odoo-bin")
    if not os.path.exists(launcher):
        with open(launcher, "w", encoding="utf-8") as handle:
            handle.write(LAUNCHER)
    command = [sys.executable, launcher, "-c", conf, "-d", database, "--log-level=warn", *args]
    if log:
        command.append(f"--logfile={log}")
    return command


def cpu_seconds(pid=None):
    """CPU time (user and system) of a process: this one, or ``pid``."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_xid(registry):
    """The transaction id PostgreSQL gives this read: the ids given between two of them
    count the transactions that wrote meanwhile, in all of this cluster's databases (the
    benchmark's alone; reading transactions get none)."""
    with registry.cursor() as cr:
        cr.execute("SELECT pg_current_xact_id()::text::bigint")
        return cr.fetchone()[0]


def ours(registry, company_id, items, lanes):
    """Updates/s of the dispatcher; its queries (Odoo's counter), CPU milliseconds (this
    process's) and writing transactions per update."""
    transactions = last_xid(registry)
    queries, cpu = odoo.sql_db.sql_counter, cpu_seconds()
    rate = dispatcher(registry, company_id, items, lanes)
    cpu = (cpu_seconds() - cpu) * 1000 / len(items)
    queries = (odoo.sql_db.sql_counter - queries) / len(items)
    # the ids strictly between the two reads, but the bench's: the jobs' INSERT, the
    # ANALYZE, the clean-up
    transactions = last_xid(registry) - transactions - 1 - 3
    return rate, queries, cpu, transactions / len(items)


def theirs(registry, company_id, items, capacity, server_pid, timeout=600):
    """Updates/s of queue_job: ``items`` enqueued with ``with_delay()`` in one
    transaction, timed from its commit until every job is done; also the enqueue's
    milliseconds and queries per job, the server's CPU milliseconds and the writing
    transactions per job, and how many jobs were started at once at most. The jobs done
    are deleted after (as the dispatcher's side does with its own)."""
    transactions = last_xid(registry)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        cr.execute("SELECT coalesce(max(id), 0) FROM queue_job")
        (first_id,) = cr.fetchone()
        sender = env["bench.queue.job.sender"]
        queries = cr.sql_log_count
        began = time.perf_counter()
        for payload in items:
            sender.with_delay(description=f"bench {payload['orderBillCode']}").send_update(
                company_id, payload
            )
        env.flush_all()
        queries = cr.sql_log_count - queries
        enqueue_ms = (time.perf_counter() - began) * 1000 / len(items)
        cr.execute("ANALYZE queue_job")  # as autovacuum keeps it
        cpu = cpu_seconds(server_pid)
        cr.commit()
        started = time.perf_counter()
        peak = 0
        deadline = time.time() + timeout
        while True:
            cr.execute(
                """SELECT count(*) FILTER (WHERE state = 'done'),
                          count(*) FILTER (WHERE state = 'started'),
                          count(*) FILTER (WHERE state = 'failed'
                                             OR state = 'pending' AND retry > 0)
                     FROM queue_job WHERE id > %s""",
                [first_id],
            )
            done, running, failed = cr.fetchone()
            cr.commit()
            peak = max(peak, running)
            if done == len(items):
                break
            if failed or time.time() > deadline:
                cr.execute(
                    "SELECT coalesce(exc_info, result) FROM queue_job WHERE id > %s "
                    "AND (state = 'failed' OR state = 'pending' AND retry > 0) LIMIT 1",
                    [first_id],
                )
                why = (cr.fetchone() or ["too slow"])[0]
                raise SystemExit(f"queue_job: {done} done, {failed} failed or retried: {why}")
            time.sleep(0.025)  # light: the server shares the cores
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds(server_pid) - cpu) * 1000 / len(items)
        cr.execute("DELETE FROM queue_job WHERE id > %s AND state = 'done'", [first_id])
        assert cr.rowcount == len(items), cr.rowcount
    assert peak <= capacity, peak
    # the ids strictly between the two reads, but the bench's: the enqueueing (with the
    # ANALYZE), the clean-up
    transactions = last_xid(registry) - transactions - 1 - 2
    return (
        len(items) / elapsed,
        enqueue_ms,
        queries / len(items),
        peak,
        cpu,
        transactions / len(items),
    )


def runjob_lines(log, offset, expected=0):
    """Queries, milliseconds in SQL and milliseconds in all of each runjob request logged
    after ``offset`` (waiting a little for ``expected`` of them: a request's line comes
    after its job's commit); the new offset."""
    seen, deadline = [], time.time() + 10
    while True:
        with open(log, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
        data = data[: data.rfind(b"\n") + 1]  # whole lines only
        offset += len(data)
        seen += [
            (int(queries), float(query_time) * 1000, (float(query_time) + float(rest)) * 1000)
            for queries, query_time, rest in RUNJOB_LINE.findall(data.decode(errors="replace"))
        ]
        if len(seen) >= expected or time.time() > deadline:
            return seen, offset
        time.sleep(0.1)


def received(url):
    """What the sandbox gateway received, in the order it arrived: (bill, status, ok)."""
    base = url.split("/router/")[0]
    calls = requests.get(f"{base}/_sandbox/requests", timeout=60).json()
    return [
        (c["params"].get("orderBillCode"), c["params"].get("status"), c["verdict"] == "accepted")
        for c in calls
    ]


def arrivals(calls, items):
    """How many of ``items`` the gateway accepted, and in how many of their orders the
    second update arrived before the first."""
    wanted = {(p["orderBillCode"], p["status"]) for p in items}
    seen = defaultdict(list)
    accepted = 0
    for bill, status, ok in calls:
        if (bill, status) in wanted and ok:
            accepted += 1
            seen[bill].append(status)
    inverted = sum(1 for statuses in seen.values() if statuses.index("2") < statuses.index("1"))
    return accepted, inverted


def report(args, latency, sides):
    ours_, theirs_ = sides["ours"], sides["queue_job"]
    rate = {side: statistics.median(seen["rate"]) for side, seen in sides.items()}
    ms = latency * 1000
    n, orders = args.lanes, args.updates // 2
    print(
        f"{args.updates} updates over {orders} orders, {ms:.0f} ms gateway, "
        f"median of {args.rounds} rounds"
    )
    for side, label in (("ours", f"dispatcher, {n} lanes"), ("queue_job", f"queue_job, {n}")):
        seen = sides[side]
        slot = n * 1000 / rate[side]  # a lane's (a channel place's) time per update
        rounds = ", ".join(f"{value:.1f}" for value in seen["rate"])
        print(
            f"  {label:20} {rate[side]:7.1f} updates/s ({rounds}); {slot:.1f} ms per update "
            f"and lane, {slot - ms:.1f} beyond the gateway's; "
            f"{statistics.mean(seen['queries']):.1f} queries{' in runjob' * (side != 'ours')}, "
            f"{statistics.median(seen['transactions']):.1f} writing transactions and "
            f"{statistics.median(seen['cpu']):.1f} ms of Odoo's CPU per update"
        )
    print(
        f"  queue_job: a runjob request takes {statistics.median(theirs_['runjob ms']):.1f} ms "
        f"(median, call included; {statistics.median(theirs_['runjob sql ms']):.1f} in SQL); "
        "enqueueing took "
        f"{statistics.mean(theirs_['enqueue ms']):.2f} ms and "
        f"{statistics.mean(theirs_['enqueue queries']):.1f} queries per job; at most "
        f"{max(theirs_['peak'])} jobs started at once"
    )
    inverted = ", ".join(str(count) for count in theirs_["inverted"])
    print(
        f"  out of order (an order's status 2 before its status 1): queue_job {inverted} of "
        f"{orders} orders per round, the dispatcher {sum(ours_['inverted'])}"
    )
    figure(
        f"queue_job ({ms:.0f} ms gateway): dispatcher {n} lanes vs queue_job capacity {n}, "
        "updates/s",
        f"{args.updates} updates over {orders} orders, median of {args.rounds}; "
        f"queue_job sent {max(theirs_['inverted'])} orders out of order",
        "dispatcher",
        rate["ours"],
        "queue_job",
        rate["queue_job"],
        ">= 1.0",
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--lanes", type=int, default=8, help="and queue_job's capacity")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("POS_QIMEN_BENCH_HTTP_PORT", "8080")) + 10
    )
    args = parser.parse_args()
    peers = os.environ.get("POS_QIMEN_BENCH_PEERS")
    if not peers or not os.path.isdir(os.path.join(peers, "queue_job")):
        raise SystemExit("POS_QIMEN_BENCH_PEERS must name a folder holding queue_job")
    speeds = [gateway("fast"), gateway("slow")]
    folder = tempfile.mkdtemp(prefix="pqs-bench-qj-")
    conf, addons_path = peer_config(args.config, peers, args.port, args.lanes, folder)
    peer_db = f"{args.database}_qj"
    # the copy first: nobody may be connected to its template
    odoo.tools.config.parse_config(
        ["-c", args.config, "-d", args.database, "--log-level=warn", f"--addons-path={addons_path}"]
    )
    threading.current_thread().dbname = args.database
    server = None
    log = os.path.join(folder, "server.log")
    failed = True
    try:
        began = time.perf_counter()
        copy_database(args.database, peer_db)
        subprocess.run(
            odoo_command(folder, conf, peer_db, "-i", "bench_queue_job", "--stop-after-init"),
            check=True,
        )
        installed = time.perf_counter() - began
        began = time.perf_counter()
        server = start_server(  # werkzeug's request lines hold their query counts
            conf, peer_db, args.port, ["--log-handler=werkzeug:INFO"], log=log, folder=folder
        )
        registry = odoo.modules.registry.Registry(args.database)
        peer = odoo.modules.registry.Registry(peer_db)
        company_id = configure(registry, speeds[0][0])
        peer_company_id = configure(peer, speeds[0][0])
        # the job runner starts 5 s after the server: the first jobs wait for it
        theirs(peer, peer_company_id, payloads(2 * args.lanes), args.lanes, server.pid)
        ready = time.perf_counter() - began
        ours(registry, company_id, payloads(2 * args.lanes), args.lanes)  # as warm
        print(
            f"queue_job set-up: copy and install {installed:.1f} s, server and job runner "
            f"ready {ready:.1f} s"
        )
        _lines, offset = runjob_lines(log, 0)
        for url, latency in speeds:
            configure(registry, url)
            configure(peer, url)
            sides = {"ours": defaultdict(list), "queue_job": defaultdict(list)}
            sent = []
            for round_no in range(args.rounds):  # alternating, so that drifts hit both
                items = {"ours": payloads(args.updates), "queue_job": payloads(args.updates)}
                order = ("ours", "queue_job") if round_no % 2 == 0 else ("queue_job", "ours")
                for side in order:
                    seen = sides[side]
                    if side == "ours":
                        rate, per_update, cpu, transactions = ours(
                            registry, company_id, items[side], args.lanes
                        )
                    else:
                        rate, enqueue_ms, enqueue_queries, peak, cpu, transactions = theirs(
                            peer, peer_company_id, items[side], args.lanes, server.pid
                        )
                        seen["enqueue ms"].append(enqueue_ms)
                        seen["enqueue queries"].append(enqueue_queries)
                        seen["peak"].append(peak)
                        lines, offset = runjob_lines(log, offset, len(items[side]))
                        if len(lines) != len(items[side]):
                            raise SystemExit(
                                f"queue_job: {len(lines)} runjob requests logged for "
                                f"{len(items[side])} jobs"
                            )
                        per_update = statistics.mean(q for q, _sql, _ms in lines)
                        seen["runjob ms"].append(statistics.median(ms for _q, _sql, ms in lines))
                        seen["runjob sql ms"].append(
                            statistics.median(sql for _q, sql, _ms in lines)
                        )
                    seen["rate"].append(rate)
                    seen["queries"].append(per_update)
                    seen["cpu"].append(cpu)
                    seen["transactions"].append(transactions)
                sent.append(items)
            calls = received(url)
            for items in sent:
                for side, values in items.items():
                    accepted, inverted = arrivals(calls, values)
                    if accepted != len(values):
                        raise SystemExit(
                            f"{side}: the gateway accepted {accepted} of {len(values)} updates"
                        )
                    if side == "ours" and inverted:
                        raise SystemExit(f"the dispatcher sent {inverted} orders out of order")
                    sides[side]["inverted"].append(inverted)
            report(args, latency, sides)
        failed = False
    finally:
        if server:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        drop_database(peer_db)
        if failed:
            print(f"queue_job side: its server's log and configuration are kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
