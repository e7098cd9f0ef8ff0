# pylint: disable=print-used
"""Soak run: a real Odoo server sending ~2,000 order updates to a sandbox gateway that
injects faults of every kind into 30 % of the calls (slow replies past the read timeout
included), with lanes on, tills paying, voiding and refunding at once, two sessions
closing while their orders are being sent, and the server killed (SIGKILL) and started
again once. Then the faults stop, an operator retries what died for good, and the run
counts what the ERP received: delivered, lost, reordered, duplicated, stuck, and the
server's reloads. Run through bench/soak, which prepares the database and the gateway.

``--outage gateway`` or ``--outage secret`` runs a systemic failure instead of random
faults: the gateway answers HTTP 500 to every call, or the ERP side rotates the app
secret (every call refused with code 25), while the tills sell; the outage lasts a
simulated hour (the breaker's probes are made due every few seconds, as hours of growing
intervals would); then the gateway comes back, or the new secret is saved in the
settings. It prints the updates, the dead ones (0), the alerts (1 per incident), the
calls made during the pause, the time to drain after recovery, lost and reordered (0).
"""

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import requests
from common import ui_order

FAULTS = [
    "timeout",
    "slow",
    "trickle",
    "reset",
    "http500",
    "garbage",
    "isp",
    "failure",
    "signature",
    "isv",
    "nul",
]
RELOAD_MARKS = ("Initiating server reload", "virtual real time limit", "WorkerCron timeout")


class Server:
    """The Odoo server under test, started with scripts/odoo-bin."""

    def __init__(self, command, url, log):
        self.command, self.url, self.log = command, url, log
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )  # its log goes to --logfile
        for _i in range(240):
            try:
                requests.get(f"{self.url}/web/login", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("the server did not start")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()

    def reloads(self):
        with open(self.log, encoding="utf-8", errors="replace") as log:
            return sum(any(mark in line for mark in RELOAD_MARKS) for line in log)


def model_method(args):
    return ".".join(str(arg) for arg in args[3:5]) if len(args) > 4 else str(args[:1])


class Rpc:
    """JSON-RPC as the admin; a call retries while the server is down (as a till does)."""

    def __init__(self, url, db):
        self.url, self.db, self.local = url, db, threading.local()
        self.uid = self._call("common", "login", db, "admin", "admin")

    def _call(self, service, method, *args):
        session = getattr(self.local, "session", None) or requests.Session()
        self.local.session = session
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": args},
        }
        for _attempt in range(120):
            try:
                reply = session.post(f"{self.url}/jsonrpc", json=payload, timeout=120).json()
            except (requests.RequestException, ValueError):
                time.sleep(1)  # the server is down or restarting
                continue
            if "error" in reply:
                data = reply["error"].get("data", {})
                raise RuntimeError(f"{model_method(args)}: {data.get('message')}")
            return reply.get("result")  # Odoo leaves it out when None
        raise RuntimeError(f"{service}.{method}: the server did not come back")

    def __call__(self, model, method, *args, **kwargs):
        return self._call(
            "object", "execute_kw", self.db, self.uid, "admin", model, method, args, kwargs
        )


class Soak:
    def __init__(self, args):
        self.args = args
        self.sandbox = args.sandbox.rstrip("/")
        self.server = Server([*args.server_command.split("\x1f")], args.url, args.server_log)
        self.expected = defaultdict(set)  # order (its reference) -> events the store made
        self.lock = threading.Lock()
        self.index = 0

    # -- setting up -------------------------------------------------------------------
    def configure(self, fault_rate=None, max_attempts=10):
        fault_rate = self.args.fault_rate if fault_rate is None else fault_rate
        rpc = self.rpc
        rpc(
            "res.company",
            "write",
            [self.company_id],
            {
                "qimen_enabled": True,
                "qimen_gateway": "custom",
                "qimen_custom_url": f"{self.sandbox}/router/qm",
                "qimen_app_key": "soak-app",
                "qimen_app_secret": "soak-secret",
                "qimen_target_app_key": "soak-erp",
                "qimen_customerid": "SOAK",
                "qimen_connect_timeout": 1.0,
                "qimen_read_timeout": 2.0,
                "qimen_max_attempts": max_attempts,
            },
        )
        for key, value in (("lanes", "4"), ("retry_base_seconds", "2")):
            rpc("ir.config_parameter", "set_param", f"pos_qimen_sync.{key}", value)
        requests.delete(f"{self.sandbox}/_sandbox/requests", timeout=10)
        rate = 1 - (1 - fault_rate) ** (1 / len(FAULTS))  # any fault: fault_rate
        for kind in FAULTS if fault_rate else ():
            requests.post(
                f"{self.sandbox}/_sandbox/faults", json={"kind": kind, "rate": rate}, timeout=10
            ).raise_for_status()

    def open_session(self, config_id):
        rpc = self.rpc
        rpc("pos.config", "open_ui", [config_id])
        session = rpc(
            "pos.session",
            "search",
            [("config_id", "=", config_id), ("state", "!=", "closed")],
        )[0]
        rpc("pos.session", "set_opening_control", [session], 0, "soak")
        return session

    def close_session(self, session):
        rpc = self.rpc
        payments = rpc(
            "pos.payment",
            "search_read",
            [("session_id", "=", session), ("payment_method_id.is_cash_count", "=", True)],
            ["amount"],
        )
        cash = sum(payment["amount"] for payment in payments)
        if self.method.get(session) == self.cash_id:
            rpc("pos.session", "post_closing_cash_details", [session], cash)
        result = rpc("pos.session", "close_session_from_ui", [session])
        assert result.get("successful", True), result

    # -- the tills --------------------------------------------------------------------
    def order_data(self, session, state="paid"):
        with self.lock:
            self.index += 1
            index = self.index
        return ui_order(
            f"Order soak-{self.run_id}-{index:05d}",
            session,
            self.rpc.uid,
            self.pricelist_id,
            self.product["id"],
            self.product["lst_price"],
            self.method[session] if state == "paid" else None,
            index,
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        )

    def sell(self, session, index):
        """One till action: mostly a paid order; every 10th a saved draft then voided."""
        state = "draft" if index % 10 == 9 else "paid"
        data = self.order_data(session, state)
        result = self.rpc("pos.order", "sync_from_ui", [data])
        order = result["pos.order"][0]
        if state == "draft":
            self.rpc("pos.order", "action_pos_order_cancel", [order["id"]])
            self.expect(data["name"], "void")
        else:
            self.expect(data["name"], "confirm", "pickup")
        return order["id"] if state == "paid" else None

    def refund(self, order_id, name, session):
        action = self.rpc("pos.order", "refund", [order_id])
        refund_id = action["res_id"]
        amount = self.rpc("pos.order", "read", [refund_id], ["amount_total"])[0]["amount_total"]
        context = {"active_id": refund_id, "active_ids": [refund_id]}
        wizard = self.rpc(
            "pos.make.payment",
            "create",
            {"amount": amount, "payment_method_id": self.method[session]},
            context=context,
        )
        self.rpc("pos.make.payment", "check", [wizard], context=context)
        self.expect(name, "void")

    def expect(self, bill, *events):
        with self.lock:
            self.expected[bill].update(events)

    def load_session(self, config_id, count, kill_after=None):
        """``count`` till actions on ``tills`` tills at once, a tenth of the paid orders
        refunded; the server is killed and restarted after ``kill_after`` actions."""
        session = self.open_session(config_id)
        self.method[session] = self.cash_id if config_id == self.config_id else self.bank_id
        paid = []
        done = [0]

        def till(index):
            order_id = self.sell(session, index)
            with self.lock:
                done[0] += 1
                if order_id:
                    paid.append(order_id)
                if kill_after and done[0] == kill_after:
                    print(f"  killing the server (SIGKILL) after {kill_after} orders", flush=True)
                    self.server.kill()
                    self.kills += 1
                    threading.Thread(target=self.server.start, daemon=True).start()

        with ThreadPoolExecutor(self.args.tills) as pool:
            list(pool.map(till, range(count)))
        names = {
            o["id"]: o["pos_reference"]
            for o in self.rpc("pos.order", "read", paid[: len(paid) // 10], ["pos_reference"])
        }
        for order_id, name in names.items():
            self.refund(order_id, name, session)
        return session, paid

    # -- the run ----------------------------------------------------------------------
    def run(self):
        started = time.monotonic()
        self.set_up()
        if self.args.outage:
            return self.run_outage(started)
        self.configure()
        return self.run_random_faults(started)

    def set_up(self):
        """Start the server; two shops, a product, payment methods."""
        self.run_id = uuid.uuid4().hex[:4]
        self.kills = 0
        self.server.start()
        self.rpc = Rpc(self.args.url, self.args.db)
        self.company_id = self.rpc("res.users", "read", [self.rpc.uid], ["company_id"])[0][
            "company_id"
        ][0]
        self.config_id = self.rpc(
            "pos.config", "search", [("company_id", "=", self.company_id)], limit=1
        )[0]
        config = self.rpc(
            "pos.config", "read", [self.config_id], ["pricelist_id", "payment_method_ids"]
        )[0]
        self.pricelist_id = config["pricelist_id"] and config["pricelist_id"][0]
        self.cash_id = self.rpc(
            "pos.payment.method",
            "search",
            [("id", "in", config["payment_method_ids"]), ("is_cash_count", "=", True)],
            limit=1,
        )[0]
        self.bank_id = self.rpc(
            "pos.payment.method",
            "search",
            [
                ("id", "in", config["payment_method_ids"]),
                ("is_cash_count", "=", False),
                ("journal_id.type", "=", "bank"),
            ],
            limit=1,
        )[0]
        self.method = {}
        self.product = self.rpc(
            "product.product",
            "search_read",
            [("available_in_pos", "=", True), ("list_price", ">", 0)],
            ["lst_price"],
            limit=1,
        )[0]
        self.rpc("pos.config", "write", [self.config_id], {"qimen_customerid": "SOAK_SHOP_A"})
        # a second shop: its session opens while the first shop's closes
        self.config_b = self.rpc(
            "pos.config",
            "create",
            {
                "name": f"Soak Shop B {uuid.uuid4().hex[:4]}",
                "payment_method_ids": [(6, 0, [self.bank_id])],  # one cash method per shop
                "qimen_customerid": "SOAK_SHOP_B",
                **(
                    {
                        "use_pricelist": True,
                        "pricelist_id": self.pricelist_id,
                        "available_pricelist_ids": [(6, 0, [self.pricelist_id])],
                    }
                    if self.pricelist_id
                    else {}
                ),
            },
        )

    def run_random_faults(self, started):
        half = self.args.orders // 2
        print(
            f"soak {self.run_id}: {self.args.orders} till actions on {self.args.tills} tills, "
            f"{self.args.fault_rate:.0%} faults of {len(FAULTS)} kinds",
            flush=True,
        )
        first, _paid = self.load_session(self.config_id, half)
        print("  closing the first session while its orders are being sent", flush=True)
        closing = threading.Thread(target=self.close_session, args=(first,))
        closing.start()
        second, _paid = self.load_session(
            self.config_b, self.args.orders - half, kill_after=half // 3
        )
        closing.join()
        self.close_session(second)
        self.expect_completions()
        print("  waiting for the queue to drain (faults on)", flush=True)
        self.wait_until(self.drained)
        requests.delete(f"{self.sandbox}/_sandbox/faults", timeout=10)
        dead = self.rpc("qimen.sync.job", "search", [("state", "=", "dead")])
        print(f"  faults off; an operator retries the {len(dead)} updates that died", flush=True)
        if dead:
            self.rpc("qimen.sync.job", "action_retry", dead)
        self.wait_until(
            lambda jobs: all(j["state"] in ("done", "superseded", "cancelled") for j in jobs)
        )
        failed = self.report(time.monotonic() - started)
        self.server.stop()
        return failed

    # -- a systemic failure -----------------------------------------------------------
    def run_outage(self, started):
        """The gateway out (or the secret rotated) while the tills sell, for a simulated
        hour; then recovery. See the module's docstring."""
        kind = self.args.outage
        self.configure(fault_rate=0, max_attempts=3)
        session = self.open_session(self.config_id)
        self.method[session] = self.cash_id
        print(
            f"soak {self.run_id}: outage '{kind}', {self.args.orders} till actions on "
            f"{self.args.tills} tills during it",
            flush=True,
        )
        if kind == "gateway":
            requests.post(
                f"{self.sandbox}/_sandbox/faults", json={"kind": "http500"}, timeout=10
            ).raise_for_status()
        else:  # the ERP side rotates the app secret: every call refused (code 25)
            requests.post(
                f"{self.sandbox}/_sandbox/apps",
                json={"app_key": "soak-app", "secret": "soak-secret-rotated"},
                timeout=10,
            ).raise_for_status()
        with ThreadPoolExecutor(self.args.tills) as pool:
            list(pool.map(lambda index: self.sell(session, index), range(self.args.orders)))
        paused_since = self.wait_for(lambda: self.health()["state"] == "paused", 120)
        calls_before_pause = len(self.calls())
        print(f"  sending paused after {calls_before_pause} calls", flush=True)
        # a simulated hour: the breaker's probes made due again and again, as hours of
        # growing intervals (30 s to 10 min) would
        probes_until = time.monotonic() + 60 * self.args.outage_minutes
        while time.monotonic() < probes_until:
            self.make_probe_due()
            time.sleep(5)
        calls_during_pause = len(self.calls()) - calls_before_pause
        health = self.health()
        print(
            f"  {health['probes']} probes failed; recovering "
            f"({'gateway back' if kind == 'gateway' else 'new secret saved'})",
            flush=True,
        )
        recovered = time.monotonic()
        if kind == "gateway":
            requests.delete(f"{self.sandbox}/_sandbox/faults", timeout=10)
            self.make_probe_due()  # the next probe, an hour of outage later
        else:
            self.rpc(
                "res.company",
                "write",
                [self.company_id],
                {"qimen_app_secret": "soak-secret-rotated"},
            )
        self.wait_until(
            lambda jobs: all(j["state"] in ("done", "superseded", "cancelled") for j in jobs)
        )
        drained = time.monotonic() - recovered
        try:  # the alert is closed by the cron run that finds nothing left waiting
            self.wait_for(lambda: not self.open_alerts(), 60)
        except RuntimeError:
            print("  (the alert was still open a minute after the queue drained)", flush=True)
        dead = self.rpc("qimen.sync.job", "search_count", [("state", "=", "dead")])
        closed = self.rpc(
            "mail.message",
            "search_read",
            [("model", "=", "qimen.sync.health"), ("body", "ilike", "Resumed after")],
            ["body"],
        )
        alerts = self.open_alerts() + len(closed)
        failed = self.report(time.monotonic() - started)
        print("")
        print(f"  outage            {kind} (paused at {paused_since:.0f} s)")
        print(f"  dead              {dead}")
        print(f"  alerts            {alerts}")
        print(f"  calls in pause    {calls_during_pause} ({health['probes']} probes failed)")
        print(f"  drained in        {drained:.1f} s after recovery")
        for message in closed:
            text = " ".join(re.sub(r"<[^>]+>", " ", message["body"]).split())
            print(f"  alert closed      {text}")
        self.server.stop()
        return failed + dead + (alerts != 1)

    def health(self):
        (health,) = self.rpc(
            "qimen.sync.health",
            "search_read",
            [("company_id", "=", self.company_id)],
            ["state", "probes", "next_probe"],
        )
        return health

    def make_probe_due(self):
        """Stand for the time a probe interval takes: the probe is due now, and the
        server's cron runs (as the breaker's own trigger would have it run)."""
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 1))
        ids = self.rpc("qimen.sync.health", "search", [("state", "=", "paused")])
        if not ids:
            return
        self.rpc("qimen.sync.health", "write", ids, {"next_probe": now})
        cron = self.rpc(
            "ir.model.data", "check_object_reference", "pos_qimen_sync", "ir_cron_qimen_dispatch"
        )[1]
        try:  # run now (a cron thread would only see a new trigger at its next poll)
            self.rpc("ir.cron", "method_direct_trigger", [cron])
        except RuntimeError:  # a cron thread is running it: it will see the probe due
            self.rpc("ir.cron.trigger", "create", {"cron_id": cron, "call_at": now})

    def open_alerts(self):
        return self.rpc(
            "mail.activity",
            "search_count",
            [("res_model", "=", "qimen.sync.health"), ("summary", "ilike", "paused")],
        )

    def calls(self):
        return requests.get(f"{self.sandbox}/_sandbox/requests", timeout=60).json()

    def wait_for(self, condition, timeout):
        """Seconds until ``condition()`` held (an error past ``timeout``)."""
        began = time.monotonic()
        while not condition():
            if time.monotonic() - began > timeout:
                raise RuntimeError("timed out waiting")
            time.sleep(1)
        return time.monotonic() - began

    def expect_completions(self):
        """Paid orders of a closed session are completed, unless voided."""
        orders = self.rpc(
            "pos.order",
            "search_read",
            [
                ("pos_reference", "like", f"soak-{self.run_id}-"),
                ("state", "in", ["done", "invoiced"]),
            ],
            ["pos_reference", "refunded_order_id", "qimen_cancelled"],
        )
        for order in orders:
            if not order["qimen_cancelled"] and not order["refunded_order_id"]:
                self.expect(order["pos_reference"], "complete")

    def wait_until(self, settled, timeout=900):
        """Wait until ``settled(jobs)``: jobs are dicts with id, bill_code and state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.rpc("qimen.sync.job", "search_read", [], ["bill_code", "state"], order="id")
            if settled(jobs):
                return
            time.sleep(2)
        print("  (timed out waiting)", flush=True)

    @staticmethod
    def drained(jobs):
        """Nothing in flight or due: what waits, waits behind a dead update of its order
        (an operator decides about those)."""
        dead_orders = {job["bill_code"] for job in jobs if job["state"] == "dead"}
        return not any(
            job["state"] in ("sending", "failed")
            or (job["state"] == "pending" and job["bill_code"] not in dead_orders)
            for job in jobs
        )

    def as_bill_codes(self):
        """The expectations by the bill code the ERP knows each order by (the shop's
        prefix and the reference, which the soak names ``soak-<run>-…``)."""
        orders = self.rpc(
            "pos.order",
            "search_read",
            [("pos_reference", "like", f"soak-{self.run_id}-")],
            ["pos_reference", "qimen_bill_code"],
        )
        code = {o["pos_reference"]: o["qimen_bill_code"] for o in orders}
        expected = defaultdict(set)
        for name, events in self.expected.items():
            expected[code.get(name) or name] |= events
        self.expected = expected

    def report(self, seconds):
        self.as_bill_codes()
        jobs = self.rpc(
            "qimen.sync.job", "search_read", [], ["bill_code", "event", "state"], order="id"
        )
        calls = requests.get(f"{self.sandbox}/_sandbox/requests", timeout=60).json()
        delivered_calls = defaultdict(list)  # bill -> [(arrival, event)]
        faults = Counter()
        for arrival, call in enumerate(calls):
            if call["fault"]:
                faults[call["fault"]] += 1
            if call["verdict"] != "accepted":
                continue
            event = json.loads(call["params"]["extendProps"])["event"]
            delivered_calls[call["params"]["orderBillCode"]].append((arrival, event))
        job_id = {(j["bill_code"], j["event"]): j["id"] for j in jobs if j["state"] == "done"}
        deliveries = Counter(
            (bill, event) for bill, seen in delivered_calls.items() for _a, event in seen
        )
        delivered = sum(1 for key in job_id if deliveries[key])
        lost_sent = sum(1 for key in job_id if not deliveries[key])
        by_key = {(j["bill_code"], j["event"]) for j in jobs}
        superseded = {(j["bill_code"], j["event"]) for j in jobs if j["state"] == "superseded"}
        never_queued = sum(
            1
            for bill, events in self.expected.items()
            for event in events
            if (bill, event) not in by_key
        )
        # the queue's order of each update: a superseded one that the ERP received before
        # the void that superseded it (it had answered too late) is in its place too
        queue_id = {(j["bill_code"], j["event"]): j["id"] for j in jobs}
        queue_id.update(job_id)
        reordered = 0
        for bill, seen in delivered_calls.items():
            newest = 0
            for _arrival, event in seen:
                current = queue_id.get((bill, event), 0)
                if current < newest:
                    reordered += 1
                    states = {j["event"]: j["state"] for j in jobs if j["bill_code"] == bill}
                    print(
                        f"  REORDERED {bill}: received {[e for _a, e in seen]}, queued "
                        f"{sorted((queue_id.get((bill, e), 0), e) for e in states)}, {states}"
                    )
                newest = max(newest, current)
        duplicated = sum(count - 1 for count in deliveries.values() if count > 1)
        stuck = sum(1 for j in jobs if j["state"] in ("pending", "sending", "failed", "dead"))
        states = Counter(j["state"] for j in jobs)
        print(f"\nsoak {self.run_id} done in {seconds:.0f}s")
        print(
            f"  updates queued      {len(jobs)} ({dict(states)}), over {len(self.expected)} orders"
        )
        print(f"  gateway calls       {len(calls)}, faults injected: {dict(faults)}")
        received_superseded = sum(1 for key in superseded if deliveries[key])
        print(
            f"  superseded by a void (sent in it): {len(superseded)}, of which the ERP had "
            f"received {received_superseded} (answered too late, before their void)"
        )
        print(f"  server killed on purpose: {self.kills}")
        print("")
        print(f"  delivered   {delivered}")
        print(f"  lost        {lost_sent + never_queued}")
        print(f"  reordered   {reordered}")
        print(
            f"  duplicated  {duplicated}   (applied by the ERP but answered too late: sent again)"
        )
        print(f"  stuck       {stuck}")
        print(f"  reloads     {self.server.reloads()}")
        failed = lost_sent + never_queued + reordered + stuck + self.server.reloads()
        print("  verdict     " + ("OK" if not failed and delivered else "FAILED"))
        return failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--server-command", required=True, help="argv joined by \\x1f")
    parser.add_argument("--server-log", required=True)
    parser.add_argument("--orders", type=int, help="default: 720, or 60 with --outage")
    parser.add_argument("--tills", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--outage", choices=["gateway", "secret"])
    parser.add_argument("--outage-minutes", type=float, default=1.0)
    args = parser.parse_args()
    args.orders = args.orders or (60 if args.outage else 720)
    soak = Soak(args)
    try:
        return 1 if soak.run() else 0
    finally:
        if soak.server.process and soak.server.process.poll() is None:
            soak.server.stop()


if __name__ == "__main__":
    sys.exit(main())
