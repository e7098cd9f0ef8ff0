# pylint: disable=print-used
"""What a verified ERP callback costs, against the peer an integrator would otherwise
use: the ERP writing the same order fields through Odoo's external JSON-RPC.

Starts its own Odoo server (an odoo-bin style launcher) on 127.0.0.1:PORT, then, with
one client and with 8 at once (``--concurrency``), sends in interleaved rounds (the side
that goes first alternates) signed status-2 callbacks through /qimen/callback (each one
new content, checked applied) and bare ``pos.order.write`` calls of the same orders
through /jsonrpc ``execute_kw``, and prints both rates and their ratio for each, with the
SQL queries of one callback measured in-process. Run through bench/run, or:

    python3 bench/callback.py -c <odoo.conf> -d <database> [--port 8271]

``--profile N`` instead profiles N verified callbacks in-process (cProfile, CPU time;
each call in its own cursor and commit, as in a request) and prints where the time goes
(the README's "Where a callback's time goes").

``--in-process`` instead times both sides through Odoo's WSGI application in this
process (no socket, no HTTP server, no client): what the HTTP layer adds is left out.

``--burst N`` instead sends N valid callbacks at once (one connection each) and counts
the answers: the server's thread and connection limits (``ODOO_MAX_HTTP_THREADS`` in the
environment, or ``--workers``) decide whether some get an HTML 500 ("connection pool is
full"). Extra arguments after ``--`` go to the Odoo server.
"""

import argparse
import cProfile
import http.client
import json
import os
import pstats
import statistics
import sys
import threading
import time
import uuid
from urllib.parse import urlencode

import requests
from common import figure, settle, start_server
from werkzeug.test import EnvironBuilder

import odoo
import odoo.http
from odoo import SUPERUSER_ID, api

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qimen.responses import parse_reply
from qimen.sandbox import build_push

APP_KEY = "bench-app"
SECRET = "bench-callback-secret"
CUSTOMERID = "BENCH_SHOP"


def prepare(database, orders):
    """Commit a shop, a session and ``orders`` draft orders; configure the callback."""
    registry = odoo.modules.registry.Registry(database)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        company = env.ref("base.main_company")
        company.write(
            {
                "qimen_enabled": True,
                "qimen_app_key": APP_KEY,
                "qimen_app_secret": "bench-outbound-secret",
                "qimen_callback_secret": SECRET,
                "qimen_customerid": CUSTOMERID,
            }
        )
        config = env["pos.config"].create({"name": f"Bench shop {uuid.uuid4().hex[:6]}"})
        session = env["pos.session"].create({"config_id": config.id, "user_id": env.uid})
        run = uuid.uuid4().hex[:6]
        records = env["pos.order"].create(
            [
                {
                    "session_id": session.id,
                    "amount_tax": 0,
                    "amount_total": 0,
                    "amount_paid": 0,
                    "amount_return": 0,
                    "qimen_bill_code": f"BENCH-{run}-{index}",
                }
                for index in range(orders)
            ]
        )
        return [(order.id, order.qimen_bill_code) for order in records]


def signed_push(bill, shipping_sn):
    """``(query, body, content_type)`` of a signed status-2 call of the ERP for the
    order ``bill``, with new content when ``shipping_sn`` is new."""
    params = {"orderBillCode": bill, "status": "2", "shippingSn": shipping_sn}
    return build_push(params, SECRET, APP_KEY, customerid=CUSTOMERID)


def queries_per_callback(database, bill_code):
    """SQL queries of one verified status-2 callback with an empty ORM cache, as in a
    request (the registry's caches warm), in a transaction rolled back."""
    registry = odoo.modules.registry.Registry(database)
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        log = env["qimen.callback.handler"]
        counts = []
        for index in range(3):  # the first one warms the caches
            query, body, _ctype = signed_push(bill_code, f"Q{index}")
            env.invalidate_all()
            before = cr.sql_log_count
            status, reply, _ctype = log._handle_call(
                "POST", urlencode(query).encode(), body, "application/json", "127.0.0.1"
            )
            env.flush_all()
            assert status == 200 and parse_reply(reply).ok, reply
            counts.append(cr.sql_log_count - before)
        cr.rollback()
    return counts[-1]


def profile(database, orders, top=45):
    """cProfile (CPU time) of one verified status-2 callback per order, in-process, each
    in its own cursor and commit as in a request; print the top functions."""
    registry = odoo.modules.registry.Registry(database)

    def call(query, body):
        with registry.cursor() as cr:
            handler = api.Environment(cr, SUPERUSER_ID, {})["qimen.callback.handler"]
            status, reply, _ctype = handler._handle_call(
                "POST", urlencode(query).encode(), body, "application/json", "127.0.0.1"
            )
            assert status == 200 and parse_reply(reply).ok, reply

    def pushes(tag, some):
        return [signed_push(bill, f"{tag}-{bill}")[:2] for _order_id, bill in some]

    for query, body in pushes("WARM", orders[:10]):  # the registry's caches warm
        call(query, body)
    calls = pushes("PROFILE", orders)
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for query, body in calls:
        call(query, body)
    profiler.disable()
    stats = pstats.Stats(profiler)
    each = 1000 * stats.total_tt / len(calls)
    print(f"{len(calls)} callbacks in-process, {each:.2f} ms of CPU each under the profiler")
    stats.sort_stats("cumulative").print_stats(top)


def run_parallel(tasks, concurrency):
    """Run the callables in ``tasks`` on ``concurrency`` threads; return seconds."""
    pending = list(reversed(tasks))
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                task = pending.pop()
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - reported after the round
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} calls failed, e.g. {errors[0]!r}")
    return time.perf_counter() - began


def post(port, path, body, content_type):
    """POST ``body`` to ``path``; return ``(status, body)``. The standard library's
    client, a connection per call as the threaded server closes each: both sides' calls
    cost the client the same (requests re-checks every character of a URL on each call,
    0.5 ms more for the callback's long signed query than for JSON-RPC's short path)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def callback_requests(orders, round_no):
    """``(path, body)`` per order: a signed status-2 call with new content."""
    requests_ = []
    for _order_id, bill in orders:
        query, body, _ctype = signed_push(bill, f"CB-{round_no}-{bill}")
        requests_.append((f"/qimen/callback?{urlencode(query)}", body))
    return requests_


def callback_applied(status, answer):
    reply = parse_reply(answer, status)
    if not (status == 200 and reply.ok and reply.message == "OK"):
        raise RuntimeError(f"not applied: {status} {answer[:200]!r}")


def rpc_requests(database, uid, password, orders, round_no):
    """``("/jsonrpc", body)`` per order: ``execute_kw(pos.order, write)`` of the fields a
    status-2 callback writes: the ERP's status and its latest report, when, and what it
    told (its tracking number)."""
    requests_ = []
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    for order_id, bill in orders:
        told = {"shippingSn": f"RPC-{round_no}-{bill}"}
        values = {
            "qimen_erp_status": "2",
            "qimen_erp_status_date": now,
            "qimen_erp_reported": told,
            "qimen_erp_last_status": "2",
            "qimen_erp_last_report_date": now,
            "qimen_erp_last_report": told,
        }
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {
                "service": "object",
                "method": "execute_kw",
                "args": [database, uid, password, "pos.order", "write", [[order_id], values]],
            },
        }
        requests_.append(("/jsonrpc", json.dumps(payload).encode()))
    return requests_


def rpc_written(status, answer):
    result = json.loads(answer) if status == 200 else {}
    if result.get("result") is not True:
        raise RuntimeError(f"write failed: {status} {answer[:200]!r}")


def http_tasks(port, requests_, check):
    """One task per request, its body built beforehand: sent, then checked."""

    def task(path, body):
        def send():
            check(*post(port, path, body, "application/json"))

        return send

    return [task(path, body) for path, body in requests_]


def callback_tasks(port, orders, round_no):
    return http_tasks(port, callback_requests(orders, round_no), callback_applied)


def rpc_tasks(port, database, uid, password, orders, round_no):
    return http_tasks(port, rpc_requests(database, uid, password, orders, round_no), rpc_written)


def in_process(args, orders, rounds=4):
    """Both sides through Odoo's WSGI application in this process (no socket, no HTTP
    server, no client): wall milliseconds per call of each side, interleaved rounds."""
    odoo.tools.config["dbfilter"] = f"^{args.database}$"  # as the benchmark's server
    odoo.service.server.load_server_wide_modules()
    application = odoo.http.root

    def call(path, body):
        environ = EnvironBuilder(
            path=path,
            method="POST",
            data=body,
            content_type="application/json",
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        ).get_environ()
        statuses = []
        answer = application(environ, lambda status, _headers, _exc=None: statuses.append(status))
        try:
            return int(statuses[0].split()[0]), b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()

    with odoo.modules.registry.Registry(args.database).cursor() as cr:
        users = api.Environment(cr, SUPERUSER_ID, {})["res.users"]
        uid = users.search([("login", "=", args.login)]).id  # as the HTTP run logs in
    if not uid:
        raise SystemExit(f"no user {args.login} for the JSON-RPC side")
    sides = {
        "callback": (lambda tag: callback_requests(orders, tag), callback_applied),
        "JSON-RPC": (
            lambda tag: rpc_requests(args.database, uid, args.password, orders, tag),
            rpc_written,
        ),
    }
    for build, check in sides.values():  # warm
        for path, body in build("warm")[:20]:
            check(*call(path, body))
    times = {side: [] for side in sides}
    for round_no in range(rounds):
        for side in list(sides) if round_no % 2 == 0 else reversed(sides):
            build, check = sides[side]
            for path, body in build(f"wsgi-{round_no}"):
                started = time.perf_counter()
                answer = call(path, body)
                times[side].append((time.perf_counter() - started) * 1000)
                check(*answer)
    print(
        f"in-process through Odoo's WSGI application, {len(orders)} calls per side and "
        f"round, {rounds} interleaved rounds, ms per call (median, p90):"
    )
    for side, samples in times.items():
        samples.sort()
        median, p90 = statistics.median(samples), samples[int(len(samples) * 0.9)]
        print(f"  {side:9} {median:6.2f}  {p90:6.2f}")


def burst(base, orders):
    """Send one valid callback per order, all at once; count the answers."""
    calls = [signed_push(bill, f"BURST-{bill}") for _order_id, bill in orders]
    start, answers = threading.Barrier(len(calls)), []

    def send(query, body, ctype):
        start.wait()
        try:
            response = requests.post(
                f"{base}/qimen/callback?{urlencode(query)}",
                data=body,
                headers={"Content-Type": ctype, "Connection": "close"},
                timeout=300,
            )
        except requests.RequestException as exc:
            answers.append(f"no answer ({type(exc).__name__}: {str(exc)[-60:]})")
            return
        html = response.headers.get("Content-Type", "").startswith("text/html")
        reply = parse_reply(response.content, response.status_code)
        verdict = "applied" if reply.ok else f"code {reply.code}"
        answers.append(f"HTTP {response.status_code} {'HTML' if html else verdict}")

    threads = [threading.Thread(target=send, args=call) for call in calls]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    print(f"{len(calls)} valid callbacks at once, answered in {seconds:.1f} s:")
    for answer in sorted(set(answers)):
        print(f"  {answers.count(answer):4}  {answer}")


def login(base, database, user, password):
    uid = requests.post(
        f"{base}/jsonrpc",
        json={
            "jsonrpc": "2.0",
            "method": "call",
            "params": {
                "service": "common",
                "method": "login",
                "args": [database, user, password],
            },
        },
        timeout=60,
    ).json()["result"]
    if not uid:
        raise SystemExit(f"cannot log in as {user} for the JSON-RPC side")
    return uid


def compare(args, uid, orders, concurrency):
    """Rates (calls/s) of both sides at ``concurrency`` clients: interleaved rounds, the
    side that goes first alternating, each round new content on the same orders."""

    def callbacks(tag, some=orders):
        return callback_tasks(args.port, some, f"{concurrency}-{tag}")

    def writes(tag, some=orders):
        return rpc_tasks(args.port, args.database, uid, args.password, some, f"{concurrency}-{tag}")

    warm = orders[: concurrency * 4]
    run_parallel(callbacks("warm", warm), concurrency)
    run_parallel(writes("warm", warm), concurrency)
    seconds = {"callback": 0.0, "jsonrpc": 0.0}
    sides = [("callback", callbacks), ("jsonrpc", writes)]
    for round_no in range(args.rounds):
        for side, tasks in sides if round_no % 2 == 0 else reversed(sides):
            seconds[side] += run_parallel(tasks(round_no), concurrency)
    total = len(orders) * args.rounds
    return total / seconds["callback"], total / seconds["jsonrpc"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    port = os.environ.get("POS_QIMEN_BENCH_HTTP_PORT", "8271")
    parser.add_argument("--port", type=int, default=int(port), help="HTTP port of the server")
    parser.add_argument("-n", "--calls", type=int, default=200, help="calls per side and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--concurrency",
        default="1,8",
        help="clients at once, one comparison each (comma-separated)",
    )
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--burst", type=int, default=0, help="N valid callbacks at once")
    parser.add_argument("--profile", type=int, default=0, help="profile N callbacks")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="both sides through Odoo's WSGI application in this process, no HTTP",
    )
    parser.add_argument("server_args", nargs="*", help="after --: for the Odoo server")
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    orders = prepare(args.database, args.profile or args.burst or args.calls)
    if args.profile:
        profile(args.database, orders)
        return
    if args.in_process:
        settle(odoo.modules.registry.Registry(args.database))
        in_process(args, orders)
        return
    base = f"http://127.0.0.1:{args.port}"
    if args.burst:
        server = start_server(args.config, args.database, args.port, args.server_args)
        try:
            burst(base, orders)
        finally:
            server.terminate()
            server.wait(30)
        return
    queries = queries_per_callback(args.database, orders[0][1])
    settle(odoo.modules.registry.Registry(args.database))
    server = start_server(args.config, args.database, args.port, args.server_args)
    rates = {}
    try:
        uid = login(base, args.database, args.login, args.password)
        for concurrency in (int(value) for value in args.concurrency.split(",")):
            rates[concurrency] = compare(args, uid, orders, concurrency)
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"ERP -> store updates, {len(orders) * args.rounds} per side in {args.rounds} "
        "interleaved rounds (who goes first alternates), one Odoo server (threaded) on loopback"
    )
    print(f"  SQL queries per callback (in-process, as in a request): {queries}")
    for concurrency, (callback, jsonrpc) in rates.items():
        clients = f"{concurrency} client{'s' if concurrency > 1 else ''}"
        print(f"  {clients}:")
        print(f"    /qimen/callback status 2 (verified, applied)  {callback:7.1f} calls/s")
        print(f"    JSON-RPC pos.order.write, same fields         {jsonrpc:7.1f} calls/s")
        print(f"    ratio callback / JSON-RPC: {callback / jsonrpc:.2f}x")
    for concurrency, (callback, jsonrpc) in rates.items():
        figure(
            "verified status-2 callbacks vs JSON-RPC write of the same fields, calls/s",
            f"one threaded server, {concurrency} "
            + ("client" if concurrency == 1 else "concurrent clients"),
            "callback",
            callback,
            "JSON-RPC",
            jsonrpc,
            ">= 1.0",
        )


if __name__ == "__main__":
    main()
