# pylint: disable=print-used
"""What the sync hook costs the cashier: sync_from_ui per paid order, sync on vs off.

Each order is one real transaction, committed (what the POS's call costs, commit and
its post-commit hooks included), in interleaved blocks of sync off and sync on so that
a drift of the machine hits both sides. Run through bench/run.
"""

import argparse
import statistics
import time

from common import figure, ui_order

import odoo
from odoo import SUPERUSER_ID, api, fields


def order_data(env, session, product, method, index):
    now = fields.Datetime.to_string(fields.Datetime.now())
    return ui_order(
        f"Order bench-{index:06d}",
        session.id,
        env.uid,
        session.config_id.pricelist_id.id,
        product.id,
        product.lst_price or 1.0,
        method.id,
        index,
        now,
    )


class Till:
    """The main shop's till: one committed transaction per call, like the POS's RPC."""

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

    def set_sync(self, enabled):
        with self.cursor() as cr:
            self.env(cr).ref("base.main_company").sudo().qimen_enabled = enabled

    def pay_orders(self, count, per_call=1):
        """Pay ``count`` orders, ``per_call`` per sync_from_ui; return (ms, queries) per
        call, each call committed."""
        results = []
        for _call in range(0, count, per_call):
            with self.cursor() as cr:
                env = self.env(cr)
                session = env["pos.config"].browse(self.config_id).current_session_id
                product = env["product.product"].search(
                    [("available_in_pos", "=", True), ("list_price", ">", 0)], limit=1
                )
                method = session.config_id.payment_method_ids.filtered("is_cash_count")[:1]
                batch = []
                for _i in range(per_call):
                    self.index += 1
                    batch.append(order_data(env, session, product, method, self.index))
                env.invalidate_all()
                queries = cr.sql_log_count
                started = time.perf_counter()
                env["pos.order"].sync_from_ui(batch)
                cr.commit()
                results.append(((time.perf_counter() - started) * 1000, cr.sql_log_count - queries))
        return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-size", type=int, default=10)
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    till = Till(odoo.modules.registry.Registry(args.database))
    till.set_sync(True)
    till.pay_orders(10)  # warm-up
    results = {False: [], True: []}
    for block in range(args.blocks):
        for enabled in (False, True) if block % 2 else (True, False):
            till.set_sync(enabled)
            results[enabled] += till.pay_orders(args.block_size)
    per_side = args.blocks * args.block_size
    print(f"sync_from_ui, one paid order per call and per transaction, {per_side} per side")
    medians = {}
    for enabled, label in ((False, "sync off"), (True, "sync on")):
        times = [ms for ms, _q in results[enabled]]
        queries = statistics.mean(q for _ms, q in results[enabled])
        medians[enabled] = statistics.median(times)
        print(
            f"  {label:8}  median {medians[enabled]:6.2f} ms   "
            f"p95 {sorted(times)[int(len(times) * 0.95) - 1]:6.2f} ms   "
            f"queries/order {queries:5.1f}"
        )
    figure(
        "sync_from_ui per paid order, sync on vs off, ms (median, interleaved blocks)",
        "a commit per order",
        "sync on",
        medians[True],
        "sync off",
        medians[False],
        "<= 1.03",
    )


if __name__ == "__main__":
    main()
