# pylint: disable=print-used
"""What the sync costs a session closing: closing a session of N paid orders, sync on
vs off, alternating, each side's orders paid through sync_from_ui with its setting.
Run through bench/run."""

import argparse
import statistics
import time

from common import figure
from sync_from_ui import Till

import odoo


def close_session(till):
    """Seconds to close the till's session (one transaction, committed)."""
    with till.cursor() as cr:
        env = till.env(cr)
        session = env["pos.config"].browse(till.config_id).current_session_id
        cash = sum(session.order_ids.payment_ids.mapped("amount"))
        count = len(session.order_ids)
        env.invalidate_all()
        started = time.perf_counter()
        session.post_closing_cash_details(cash)
        result = session.close_session_from_ui()
        cr.commit()
        elapsed = time.perf_counter() - started
        assert result.get("successful", True) and session.state == "closed", result
    with till.cursor() as cr:
        till.env(cr)["pos.config"].browse(till.config_id).open_ui()
    return elapsed, count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    till = Till(odoo.modules.registry.Registry(args.database))
    till.set_sync(False)
    close_session(till)  # start from an empty session
    seconds = {False: [], True: []}
    for round_ in range(args.rounds):
        for enabled in (False, True) if round_ % 2 == 0 else (True, False):
            till.set_sync(enabled)
            till.pay_orders(args.orders, per_call=25)
            elapsed, count = close_session(till)
            assert count == args.orders, count
            seconds[enabled].append(elapsed)
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"session close, {args.orders} paid orders, median of {args.rounds} per side")
    print(f"  sync off  {off:7.2f} s   ({', '.join(f'{s:.2f}' for s in seconds[False])})")
    print(f"  sync on   {on:7.2f} s   ({', '.join(f'{s:.2f}' for s in seconds[True])})")
    figure(
        f"session close with {args.orders} paid orders, sync on vs off, s",
        "a commit per 25 orders",
        "sync on",
        on,
        "sync off",
        off,
        "<= 1.1",
    )


if __name__ == "__main__":
    main()
