# pylint: disable=print-used
"""What the sync hook costs the cashier: sync_from_ui per order, sync on vs off.

Run through bench/run (it prepares a throwaway database). Prints milliseconds and SQL
queries per order; everything happens in one transaction that is rolled back.
"""

import argparse
import statistics
import time
import uuid

import odoo
from odoo import api, fields


def order_data(env, config, session, product, method, index):
    price = product.lst_price or 1.0
    now = fields.Datetime.to_string(fields.Datetime.now())
    return {
        "uuid": str(uuid.uuid4()),
        "name": f"Order bench-{index:05d}",
        "session_id": session.id,
        "user_id": env.uid,
        "pricelist_id": config.pricelist_id.id,
        "partner_id": False,
        "sequence_number": index,
        "amount_paid": price,
        "amount_total": price,
        "amount_tax": 0,
        "amount_return": 0,
        "state": "paid",
        "to_invoice": False,
        "date_order": now,
        "fiscal_position_id": False,
        "last_order_preparation_change": "{}",
        "lines": [
            [
                0,
                0,
                {
                    "product_id": product.id,
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
        "payment_ids": [[0, 0, {"amount": price, "name": now, "payment_method_id": method.id}]],
    }


def measure(env, config, session, product, method, count, start):
    times, queries = [], []
    for index in range(start, start + count):
        data = order_data(env, config, session, product, method, index)
        before_queries = env.cr.sql_log_count
        began = time.perf_counter()
        env["pos.order"].sync_from_ui([data])
        env.cr.flush()
        times.append((time.perf_counter() - began) * 1000)
        queries.append(env.cr.sql_log_count - before_queries)
    return times, queries


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("-n", "--orders", type=int, default=100)
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    registry = odoo.modules.registry.Registry(args.database)
    with registry.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        env = env(user=env.ref("base.user_admin"))  # POS sessions are opened by a user
        config = env.ref("point_of_sale.pos_config_main")
        if not config.current_session_id:
            config.open_ui()
        session = config.current_session_id
        product = env["product.product"].search(
            [("available_in_pos", "=", True), ("list_price", ">", 0)], limit=1
        )
        method = config.payment_method_ids.filtered("is_cash_count")[:1]
        company = config.company_id
        measure(env, config, session, product, method, 10, 0)  # warm-up
        results = {}
        jobs_before = env["qimen.sync.job"].search_count([])
        for label, enabled, start in (("sync off", False, 1000), ("sync on", True, 2000)):
            company.qimen_enabled = enabled
            results[label] = measure(env, config, session, product, method, args.orders, start)
        jobs = env["qimen.sync.job"].search_count([]) - jobs_before
        cr.rollback()
    print(f"sync_from_ui, {args.orders} paid orders each, one order per call")
    for label, (times, queries) in results.items():
        print(
            f"  {label:8}  median {statistics.median(times):6.1f} ms   "
            f"p95 {sorted(times)[int(len(times) * 0.95) - 1]:6.1f} ms   "
            f"queries/order {statistics.mean(queries):5.1f}"
        )
    off, on = (statistics.median(results[k][0]) for k in ("sync off", "sync on"))
    print(
        f"  hook cost: {on - off:+.1f} ms per order (median); {jobs} jobs queued, "
        "no network call in the transaction"
    )


if __name__ == "__main__":
    main()
