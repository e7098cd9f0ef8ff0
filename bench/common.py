# pylint: disable=print-used
"""Shared by the benchmark scripts: the line bench/run tabulates, and an order as the POS
sends it."""

import os
import uuid


def figure(name, conditions, left_label, left, right_label, right, goal):
    """Print a ratio with both of its sides, measured in the same run, and the
    conditions it was measured in (latency, lanes, sizes)."""
    ratio = left / right if right else float("nan")
    print(
        f"@figure|{name}|{conditions}|{left_label}|{left:.4g}|{right_label}|{right:.4g}"
        f"|{ratio:.3f}|{goal}"
    )
    return ratio


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
