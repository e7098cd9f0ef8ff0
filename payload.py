"""The parameters of ``qimen.taobao.pos.salesorder.update`` for an order: built in one
place when an update is queued, and rewritten in one place when what routes a queued
update changes before it goes out (the order's bill code, the shop's customerid)."""

import json

from .const import EVENT_STATUS, ORDER_WIRE_FIELDS
from .qimen.timeutil import to_gmt8


def build(order, event, changes=None):
    """Every parameter for ``order`` (one ``pos.order``) and ``event``, as it is now
    (``changes``: field values about to be written)."""
    order.ensure_one()
    changes = changes or {}
    params = {
        "orderBillCode": order.qimen_bill_code,
        "status": EVENT_STATUS[event],
        "customerid": order.config_id._qimen_customerid(),
    }
    for field_name, wire in ORDER_WIRE_FIELDS.items():
        value = changes[field_name] if field_name in changes else order[field_name]
        if value:
            params[wire] = to_gmt8(value) if wire.endswith("Date") else value
    if order.qimen_cancelled:
        params["cancle"] = "1"
    if order.qimen_finished:
        params["finish"] = "1"
    params["extendProps"] = json.dumps(
        {
            "event": event,
            "posOrder": order.display_name,  # a saved draft's POS reference, not "/"
            "shop": order.config_id.name,
            "amountTotal": f"{order.amount_total:.2f}",
            "currency": order.currency_id.name,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return params


def rewrite(jobs, **params):
    """Rewrite ``params`` in the payload of queued ``jobs`` (``qimen.sync.job``, sudo);
    a new ``orderBillCode`` is the jobs' bill code too."""
    for job in jobs:
        current = job.payload or {}
        if all(current.get(name) == value for name, value in params.items()):
            continue
        vals = {"payload": dict(current, **params)}
        if "orderBillCode" in params:
            vals["bill_code"] = params["orderBillCode"]
        job.write(vals)
