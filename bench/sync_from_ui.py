# pylint: disable=print-used
"""What the sync hook costs the cashier: sync_from_ui per paid order, sync on vs off,
measured two ways:

- a commit per order: each call is one transaction, committed (what the POS's call costs,
  the commit and its pre- and post-commit hooks included);
- one transaction, a flush per order: every call of the run in one transaction, each
  followed by ``env.flush_all()`` and timed with it, so that no commit's cost hides the
  hook's (committed at the end, untimed).

Sync off and sync on alternate in blocks (off-on, on-off, ...) so that a drift of the
machine hits both sides; each side's figure is the median of its calls. The first and
second halves of the run are also given apart, and the CPU time of the process and of
its PostgreSQL backends per order: when they agree with the whole, noise did not decide.
Each way starts from a database at rest (``common.settle``). Run through bench/run.
"""

import argparse
import os
import statistics
import time

from common import figure, settle, ui_order

import odoo
from odoo import SUPERUSER_ID, api, fields

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(cr):
    """CPU seconds used so far by the PostgreSQL backend serving ``cr`` (same machine)."""
    cr.execute("SELECT pg_backend_pid()")
    pid = cr.fetchone()[0]

    def used():
        with open(f"/proc/{pid}/stat") as stat:
            ticks = stat.read().rsplit(")", 1)[1].split()[11:13]  # utime, stime
        return (int(ticks[0]) + int(ticks[1])) / TICK

    return used


class Sample:
    """One call: wall and CPU milliseconds (this thread, the database backend), queries."""

    __slots__ = ("cpu", "ms", "queries")

    def __init__(self, ms, cpu, queries):
        self.ms, self.cpu, self.queries = ms, cpu, queries


class Till:
    """The main shop's till, calling sync_from_ui as the POS's RPC does."""

    def __init__(self, registry):
        self.registry = registry
        self.index = 0
        with self.cursor() as cr:
            env = self.env(cr)
            config = env.ref("point_of_sale.pos_config_main")
            if not config.current_session_id:
                config.open_ui()
            self.config_id = config.id

    def cursor(self):
        return self.registry.cursor()

    def env(self, cr):
        env = api.Environment(cr, SUPERUSER_ID, {})
        return env(user=env.ref("base.user_admin"))  # POS sessions are opened by a user

    def set_sync(self, enabled, cr=None):
        """Switch the company's sync, committed (or in ``cr``'s transaction, flushed)."""
        if cr is None:
            with self.cursor() as own:
                self.set_sync(enabled, own)
            return
        self.env(cr).ref("base.main_company").sudo().qimen_enabled = enabled
        self.env(cr).flush_all()

    def order_batch(self, env, count):
        session = env["pos.config"].browse(self.config_id).current_session_id
        product = env["product.product"].search(
            [("available_in_pos", "=", True), ("list_price", ">", 0)], limit=1
        )
        method = session.config_id.payment_method_ids.filtered("is_cash_count")[:1]
        now = fields.Datetime.to_string(fields.Datetime.now())
        batch = []
        for _i in range(count):
            self.index += 1
            batch.append(
                ui_order(
                    f"Order bench-{self.index:06d}",
                    session.id,
                    env.uid,
                    session.config_id.pricelist_id.id,
                    product.id,
                    product.lst_price or 1.0,
                    method.id,
                    self.index,
                    now,
                )
            )
        return batch

    def pay_orders(self, count, per_call=1, cr=None):
        """Pay ``count`` orders, ``per_call`` per sync_from_ui; return a :class:`Sample`
        per call. Without ``cr``, each call is a transaction of its own, committed (in
        the time); with ``cr``, every call is in its transaction, flushed (in the time),
        not committed."""
        results = []
        for start in range(0, count, per_call):
            size = min(per_call, count - start)  # the last call pays what is left
            if cr is None:
                with self.cursor() as own:
                    results.append(self._pay(own, size, commit=True))
            else:
                results.append(self._pay(cr, size, commit=False))
        return results

    def _pay(self, cr, count, commit):
        env = self.env(cr)
        batch = self.order_batch(env, count)
        if commit:
            env.invalidate_all()  # a new request starts with an empty cache
        db_cpu = backend_cpu(cr)
        queries = cr.sql_log_count
        db_started, cpu_started = db_cpu(), time.thread_time()
        started = time.perf_counter()
        env["pos.order"].sync_from_ui(batch)
        if commit:
            cr.commit()
        else:
            env.flush_all()
        ms = (time.perf_counter() - started) * 1000
        cpu = (time.thread_time() - cpu_started + db_cpu() - db_started) * 1000
        return Sample(ms, cpu, cr.sql_log_count - queries)


def interleaved(till, blocks, block_size, cr=None):
    """Samples per side (False: sync off, True: sync on), blocks alternating."""
    results = {False: [], True: []}
    for block in range(blocks):
        for enabled in (False, True) if block % 2 else (True, False):
            till.set_sync(enabled, cr)
            results[enabled].append(till.pay_orders(block_size, cr=cr))
    return results


def report(title, conditions, results, goal):
    """Print both sides (median, p95, halves, CPU, queries) and the figure."""
    print(title)
    flat, medians = {}, {}
    for enabled, label in ((False, "sync off"), (True, "sync on")):
        flat[enabled] = [sample for block in results[enabled] for sample in block]
        times = sorted(sample.ms for sample in flat[enabled])
        medians[enabled] = statistics.median(times)
        print(
            f"  {label:8}  median {medians[enabled]:7.2f} ms   "
            f"p95 {times[int(len(times) * 0.95) - 1]:7.2f} ms   "
            f"CPU {statistics.mean(s.cpu for s in flat[enabled]):7.2f} ms   "
            f"queries/order {statistics.mean(s.queries for s in flat[enabled]):5.1f}"
        )
    half = len(results[True]) // 2
    halves = []
    for part in (slice(None, half), slice(half, None)):
        side = {
            enabled: statistics.median(
                sample.ms for block in results[enabled][part] for sample in block
            )
            for enabled in (False, True)
        }
        halves.append(side[True] / side[False])
    cpu = statistics.mean(s.cpu for s in flat[True]) / statistics.mean(s.cpu for s in flat[False])
    print(
        f"  on/off: {medians[True] / medians[False]:.3f}x (halves {halves[0]:.3f}x, "
        f"{halves[1]:.3f}x; CPU {cpu:.3f}x)"
    )
    figure(
        "sync_from_ui per paid order, sync on vs off, ms (median, interleaved blocks)",
        conditions,
        "sync on",
        medians[True],
        "sync off",
        medians[False],
        goal,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--blocks", type=int, default=90)
    parser.add_argument("--block-size", type=int, default=10)
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    till = Till(odoo.modules.registry.Registry(args.database))
    settle(till.registry)
    till.set_sync(True)
    till.pay_orders(10)  # warm-up
    per_side = args.blocks * args.block_size
    blocks = f"{per_side} per side in {args.blocks} interleaved blocks"
    report(
        f"sync_from_ui, one paid order per call, a commit per order, {blocks}",
        f"a commit per order, one order per call, {blocks}",
        interleaved(till, args.blocks, args.block_size),
        "<= 1.03",
    )
    settle(till.registry)
    with till.cursor() as cr:
        till.pay_orders(10, cr=cr)  # warm-up
        results = interleaved(till, args.blocks, args.block_size, cr)
        cr.commit()
    report(
        f"sync_from_ui, one paid order per call, one transaction, {blocks}",
        f"one transaction, a flush per order (timed with it), one order per call, {blocks}",
        results,
        "<= 1.03",
    )


if __name__ == "__main__":
    main()
