# pylint: disable=print-used
"""Shared by the benchmark scripts: the line bench/run tabulates, and an order as the POS
sends it."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import requests

LAUNCHER = "import odoo\nodoo.cli.main()\n"  # odoo-bin's: Odoo's self-reload works


def figure(name, conditions, left_label, left, right_label, right, goal):
    """Print a ratio with both of its sides, measured in the same run, and the
    conditions it was measured in (latency, lanes, sizes)."""
    ratio = left / right if right else float("nan")
    print(
        f"@figure|{name}|{conditions}|{left_label}|{left:.4g}|{right_label}|{right:.4g}"
        f"|{ratio:.6f}|{goal}"  # the table rounds it; the goal is checked on this
    )
    return ratio


def outside_transaction(registry, *statements):
    """Run ``statements`` on one of ``registry``'s connections in autocommit: VACUUM and
    CHECKPOINT cannot run in a transaction."""
    with registry.cursor() as cr:
        cr._cnx.autocommit = True
        try:
            for statement in statements:
                cr.execute(statement)
        finally:
            cr._cnx.autocommit = False


def settle(registry):
    """Leave PostgreSQL nothing to clean up before the clock starts: VACUUM ANALYZE the
    whole database, then CHECKPOINT. The benchmarks before (millions of rows written and
    deleted) and a rolled-back round leave dead rows, and autovacuum would clean them up
    at random moments of the next measurement, on one of the machine's two cores
    (untimed, the same for both sides)."""
    outside_transaction(registry, "VACUUM ANALYZE", "CHECKPOINT")


def start_server(config, database, port, args=(), log=None, folder=None):
    """An Odoo server (threaded) on 127.0.0.1:``port`` for ``database``, started with an
    odoo-bin style launcher (in ``folder``, default a new one) and Odoo's ``args``; its
    log in ``log`` (default: none). Returns once it answers HTTP."""
    with socket.socket() as probe:
        if not probe.connect_ex(("127.0.0.1", port)):
            raise SystemExit(f"port {port} is taken: set POS_QIMEN_BENCH_HTTP_PORT")
    launcher = os.path.join(folder or tempfile.mkdtemp(prefix="pqs-bench-"), "odoo-bin")
    with open(launcher, "w", encoding="utf-8") as handle:
        handle.write(LAUNCHER)
    command = [sys.executable, launcher, "-c", config, "-d", database]
    command += [f"--db-filter=^{database}$", "--http-interface=127.0.0.1"]
    command += [f"--http-port={port}", "--max-cron-threads=0", "--log-level=warn", *args]
    if log:
        command.append(f"--logfile={log}")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    where = f": see {log}" if log else ""
    for _attempt in range(240):
        if server.poll() is not None:
            raise SystemExit(f"the Odoo server on port {port} stopped{where}")
        try:
            requests.get(f"http://127.0.0.1:{port}/web/login", timeout=2)
            return server
        except requests.RequestException:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"the Odoo server on port {port} did not start{where}")


def gateway(speed):
    """URL and latency (seconds) of bench/run's sandbox gateway: ``fast`` or ``slow``."""
    return (
        os.environ[f"POS_QIMEN_BENCH_{speed.upper()}_URL"],
        float(os.environ[f"POS_QIMEN_BENCH_{speed.upper()}_LATENCY"]),
    )


def ui_order(name, session_id, user_id, pricelist_id, product_id, price, method_id, index, now):
    """An order as the POS sends it to ``sync_from_ui``: one line of ``product_id``,
    paid with ``method_id`` (a saved draft, unpaid, when ``method_id`` is None);
    ``now`` is its date (UTC, ``%Y-%m-%d %H:%M:%S``)."""
    return {
        "uuid": str(uuid.uuid4()),
        "name": name,
        "session_id": session_id,
        "user_id": user_id,
        "pricelist_id": pricelist_id,
        "partner_id": False,
        "sequence_number": index,
        "amount_paid": price if method_id else 0,
        "amount_total": price,
        "amount_tax": 0,
        "amount_return": 0,
        "state": "paid" if method_id else "draft",
        "to_invoice": False,
        "date_order": now,
        "fiscal_position_id": False,
        "last_order_preparation_change": "{}",
        "lines": [
            [
                0,
                0,
                {
                    "product_id": product_id,
                    "qty": 1,
                    "price_unit": price,
                    "price_subtotal": price,
                    "price_subtotal_incl": price,
                    "discount": 0,
                    "tax_ids": [[6, 0, []]],
                    "uuid": str(uuid.uuid4()),
                },
            ]
        ],
        "payment_ids": [[0, 0, {"amount": price, "name": now, "payment_method_id": method_id}]]
        if method_id
        else [],
    }
