# pylint: disable=print-used
"""What the sync costs a session closing: closing a session of N paid orders, sync on
vs off, each side's orders paid through sync_from_ui with its setting, measured two ways:

- a commit per order: the orders paid 25 per call, a transaction each, committed; the
  close is one transaction, committed (in the time);
- one transaction: the orders paid (25 per call, ``env.flush_all()`` after each call), the
  session closed (timed, flushed) in one transaction, then rolled back: the next round
  starts from the same open, empty session.

Rounds alternate the sides (off-on, on-off, ...); each side's figure is its median close.
Each close starts from a database at rest (``common.settle``, after its orders are paid:
the dead rows that the rounds before left, a rollback's or a commit's, and the statistics
that its payments made stale are dealt with before the clock starts, not by autovacuum
at a random moment of the close), and after a full garbage collection, so that Python's
collector does not fire in one side's close for the garbage of a round before. Run
through bench/run."""

import argparse
import gc
import statistics
import time

from common import figure, settle
from sync_from_ui import Till, backend_cpu

import odoo


def close_session(till, cr=None):
    """(seconds, CPU seconds, orders) to close the till's session: in a transaction of
    its own, committed (then a new session is opened), or in ``cr``'s, flushed."""
    if cr is None:
        with till.cursor() as own:
            measured = _close(till, own, commit=True)
        with till.cursor() as own:
            till.env(own)["pos.config"].browse(till.config_id).open_ui()
        return measured
    return _close(till, cr, commit=False)


def _close(till, cr, commit):
    env = till.env(cr)
    session = env["pos.config"].browse(till.config_id).current_session_id
    cash = sum(session.order_ids.payment_ids.mapped("amount"))
    count = len(session.order_ids)
    if commit:
        env.invalidate_all()  # a new request starts with an empty cache
    db_cpu = backend_cpu(cr)
    gc.collect()  # each close starts with the same garbage: none
    db_started, cpu_started = db_cpu(), time.thread_time()
    started = time.perf_counter()
    session.post_closing_cash_details(cash)
    result = session.close_session_from_ui()
    if commit:
        cr.commit()
    else:
        env.flush_all()
    elapsed = time.perf_counter() - started
    cpu = time.thread_time() - cpu_started + db_cpu() - db_started
    assert result.get("successful", True) and session.state == "closed", result
    return elapsed, cpu, count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-d", "--database", required=True)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7, help="rounds, a commit per order")
    parser.add_argument(
        "--rounds-in-one",
        type=int,
        default=7,
        help="rounds, one transaction",
    )
    args = parser.parse_args()
    odoo.tools.config.parse_config(["-c", args.config, "-d", args.database, "--log-level=warn"])
    till = Till(odoo.modules.registry.Registry(args.database))
    till.set_sync(False)
    close_session(till)  # start from an empty session
    ways = (
        (True, "a commit per order", "a commit per 25 orders, the close committed", args.rounds),
        (
            False,
            "one transaction",
            "one transaction: the orders paid (a flush per call of 25) and the session "
            "closed (flushed), rolled back",
            args.rounds_in_one,
        ),
    )
    for commit, way, conditions, rounds in ways:
        if not rounds:
            continue
        seconds = {False: [], True: []}
        cpu = {False: [], True: []}
        for round_ in range(rounds):
            for enabled in (False, True) if round_ % 2 == 0 else (True, False):
                if commit:
                    till.set_sync(enabled)
                    till.pay_orders(args.orders, per_call=25)
                    settle(till.registry)
                    elapsed, used, count = close_session(till)
                else:
                    with till.cursor() as cr:
                        till.set_sync(enabled, cr)
                        till.pay_orders(args.orders, per_call=25, cr=cr)
                        settle(till.registry)  # in another transaction: this one is open
                        elapsed, used, count = close_session(till, cr)
                        cr.rollback()
                assert count == args.orders, count
                seconds[enabled].append(elapsed)
                cpu[enabled].append(used)
        off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
        print(f"session close, {args.orders} paid orders, {way}, median of {rounds} per side")
        for enabled, label in ((False, "sync off"), (True, "sync on")):
            print(
                f"  {label:8}  {statistics.median(seconds[enabled]):7.2f} s   "
                f"({', '.join(f'{s:.2f}' for s in seconds[enabled])})   "
                f"CPU {statistics.median(cpu[enabled]):7.2f} s"
            )
        cpu_ratio = statistics.median(cpu[True]) / statistics.median(cpu[False])
        print(f"  on/off: {on / off:.3f}x (CPU {cpu_ratio:.3f}x)")
        figure(
            f"session close with {args.orders} paid orders, sync on vs off, s",
            f"{conditions}; median of {rounds} alternating rounds",
            "sync on",
            on,
            "sync off",
            off,
            "<= 1.1",
        )


if __name__ == "__main__":
    main()
