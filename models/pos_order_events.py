"""The store's events on an order, turned into updates queued for the ERP.

Each hook runs inside the POS transaction: it records the event on the order, takes a
snapshot of the parameters to send (``payload.py``) and queues it. Enqueue only: no
I/O, and never an error raised into the cashier's request (see :meth:`_qimen_safely`)."""

import logging
from datetime import datetime

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import float_compare

from .. import payload
from ..sync_rules import RECORDED_EVENTS
from .pos_order_notices import erp_void_summary

_logger = logging.getLogger(__name__)


class PosOrder(models.Model):
    _inherit = "pos.order"

    def _qimen_set_void_reasons(self, voids):
        if not isinstance(voids, dict):
            raise UserError(self.env._("Invalid void reasons: %s", voids))
        by_reason = {}
        for order in self.filtered(lambda o: o.state == "draft"):
            void = voids.get(str(order.id), voids.get(order.id))
            if void is None:
                continue
            if (
                not isinstance(void, dict)
                or void.get("type") not in ("0", "1")
                or not isinstance(void.get("message") or "", str)
            ):
                raise UserError(
                    self.env._(
                        "Invalid void reason for order %(order)s: %(void)s",
                        order=order.display_name,
                        void=void,
                    )
                )
            message = (void.get("message") or "").strip() or False
            by_reason.setdefault((void["type"], message), []).append(order.id)
        for (void_type, message), ids in by_reason.items():  # usually one order, one write
            self.browse(ids).write({"qimen_void_type": void_type, "qimen_void_reason": message})

    def _qimen_safely(self, method, *args):
        """Run a sync hook without ever breaking the POS transaction around it.

        A hook computes in Python, then writes once: a Python error (logged) leaves
        nothing half done, so no savepoint is needed on the cashier's path. Database
        errors (a serialization failure) are raised, as point_of_sale does: Odoo then
        retries the whole request, where swallowing them would lose the update."""
        try:
            method(*args)
        except psycopg2.DatabaseError:
            raise
        except Exception:
            _logger.exception("Qimen sync: could not queue an update of %s", self.ids[:20])

    def _qimen_cashier(self):
        self.ensure_one()
        employee = self._fields.get("employee_id") and self.employee_id
        return (employee and employee.name) or self.user_id.name or self.env.user.name

    def _qimen_paid_facts(self):
        """What paying this order records, taken before point_of_sale writes the paid
        state, which writes them too (see ``action_pos_order_paid``): ``(values,
        updates)``, confirmed, and picked up when taken home at once, each update with
        what its snapshot takes as changed up to its event. None when paying records
        nothing (the sync off, a refund: see :meth:`_qimen_on_refund_paid`)."""
        if len(self) != 1 or not self.company_id.qimen_enabled or self.refunded_order_id:
            return None
        now = fields.Datetime.now()
        vals = {
            "qimen_confirm": "1",
            "qimen_confirmor": self._qimen_cashier(),
            "qimen_confirm_date": now,
        }
        updates = [("confirm", vals)]
        if self.company_id.qimen_pickup_on_paid and not self.shipping_date:
            # the confirmation's snapshot, taken once both are written, is of before it
            before = {name: self[name] for name in ("qimen_delivery", "qimen_delivery_date")}
            updates = [("confirm", dict(vals, **before))]
            vals = dict(vals, qimen_delivery="1", qimen_delivery_date=now)
            updates.append(("pickup", vals))
        return vals, [(self, event, changes) for event, changes in updates]

    def _qimen_paid_written(self, paid, updates):
        """Queue the updates of a payment, its facts written (by hand when an override of
        action_pos_order_paid wrote the paid state without them)."""
        if not paid.written:
            if self.state not in ("paid", "done", "invoiced"):
                return
            self.write(paid.vals)
        self._qimen_push(self._qimen_snapshots(updates))

    def _qimen_on_refund_paid(self):
        """A paid refund records nothing of its own: it may void the order it refunds."""
        now = fields.Datetime.now()
        for refund in self.filtered(
            lambda o: (
                o.state in ("paid", "done", "invoiced")
                and o.company_id.qimen_enabled
                and o.refunded_order_id
            )
        ):
            refund._qimen_on_refund(now)

    def _qimen_on_refund(self, now):
        """A paid refund may void the order it refunds (customer return)."""
        policy = self.company_id.qimen_refund_policy
        voided = self.browse()
        for original in self.refunded_order_id:
            fully_refunded = original._qimen_fully_refunded()
            if fully_refunded and original.qimen_erp_status == "3":  # the ERP's void done
                original._qimen_close_todo(
                    erp_void_summary,
                    lambda env: env._("Refunded: %s", self.name),
                )
            if policy == "never" or original._qimen_voided():
                continue
            if policy == "full" and not fully_refunded:
                continue
            void_type, reason = self._qimen_return_reason_for(original)
            original.write(
                {
                    "qimen_cancelled": True,
                    "qimen_canceler": self._qimen_cashier(),
                    "qimen_cancel_date": now,
                    "qimen_void_type": void_type,
                    "qimen_void_reason": reason,
                }
            )
            voided |= original
        self._qimen_queue([(original, "void") for original in voided])

    def _qimen_return_reason_for(self, original):
        """``(zf_type, zf_message)`` of the void that this refund causes: the cashier's
        reason, else one already recorded on the refunded order, else the shop's default
        return reason, else "Returned: <refund>"."""
        self.ensure_one()
        if self.qimen_return_reason:
            return self.qimen_return_type or "0", self.qimen_return_reason
        if original.qimen_void_reason:
            return "0", original.qimen_void_reason
        default = self.config_id.qimen_return_reason_id
        if default:
            return default.void_type, default.name
        return "0", self.env._("Returned: %s", self.name)

    def _qimen_voided(self):
        """Voided by the store, or reported voided by the ERP: nothing follows a void."""
        self.ensure_one()
        return self.qimen_cancelled or self.qimen_erp_status == "3"

    def _qimen_fully_refunded(self):
        self.ensure_one()
        digits = self.env["decimal.precision"].precision_get("Product Unit of Measure")
        lines = self.lines.filtered(lambda line: line.qty > 0)
        return bool(lines) and all(
            float_compare(line.refunded_qty, line.qty, precision_digits=digits) >= 0
            for line in lines
        )

    def _qimen_on_cancel(self):
        """A cancelled draft is voided in the ERP; an empty one never existed for it."""
        orders = self.filtered(
            lambda o: o.lines and not o.refunded_order_id and o.company_id.qimen_enabled
        )  # a cancelled refund is no void of the order it refunds
        now = fields.Datetime.now()
        for order in orders:
            order.write(
                {
                    "qimen_cancelled": True,
                    "qimen_canceler": self.env.user.name,  # who cancels, not who sold
                    "qimen_cancel_date": now,
                    "qimen_void_type": order.qimen_void_type or "1",
                }
            )
        self._qimen_queue([(order, "void") for order in orders])

    def _qimen_on_session_closed(self):
        """A closed session completes its orders: one write and one insert for all."""
        if not self.company_id.filtered("qimen_enabled"):
            return
        orders = self.filtered(
            lambda o: (
                o.state in ("done", "invoiced")
                # a refund (refunded_order_id, a compute over every line's refunds)
                and not o.lines.refunded_orderline_id
                and o.company_id.qimen_enabled
                and not o._qimen_voided()
            )
        )
        orders.write(
            {
                "qimen_confirm": "2",
                "qimen_finished": True,
                "qimen_finish_date": fields.Datetime.now(),
            }
        )
        self._qimen_queue([(order, "complete") for order in orders])

    def _qimen_on_picked_up(self, picking):
        self.ensure_one()
        if not self.company_id.qimen_enabled or self.qimen_delivery == "1" or self._qimen_voided():
            return
        vals = {
            "qimen_delivery": "1",
            "qimen_delivery_date": picking.date_done or fields.Datetime.now(),
        }
        carrier = "carrier_id" in picking._fields and picking.carrier_id
        if carrier:
            vals["qimen_shipping_code"] = carrier.name
        if "carrier_tracking_ref" in picking._fields and picking.carrier_tracking_ref:
            vals["qimen_shipping_sn"] = picking.carrier_tracking_ref
        self.write(vals)
        self._qimen_queue([(self, "pickup")])

    # -- the snapshot ------------------------------------------------------------------
    @api.model
    def _qimen_queue(self, updates):
        """Queue ``updates``, a list of ``(order, event)``, in one insert."""
        return self._qimen_push(self._qimen_snapshots([(o, event, None) for o, event in updates]))

    def _qimen_push(self, snapshots):
        """Queue the snapshots now, or with the other orders of the same POS call (see
        :meth:`sync_from_ui`)."""
        batch = self.env.context.get("qimen_batch")
        if batch is not None:
            batch.snapshots += snapshots
            return self.env["qimen.sync.job"]
        return self.env["qimen.sync.job"]._enqueue(snapshots)

    @api.model
    def _qimen_snapshots(self, updates):
        """``(order, event, payload)`` to queue for each ``(order, event, changes)`` of
        ``updates`` that can be sent, taken now (with ``changes`` about to be written).
        Incomplete settings (checked once per shop) are recorded on the order instead,
        and a Python error in one order's snapshot loses that update only (logged)."""
        problems_of, snapshots = {}, []
        for order, event, changes in updates:
            shop = (order.company_id, order.config_id)
            if shop not in problems_of:
                problems_of[shop] = order._qimen_sync_problems()
            if problems_of[shop]:
                order.qimen_config_error = self.env._(
                    "Qimen sync is enabled but not configured: missing %s.",
                    ", ".join(problems_of[shop]),
                )
                continue
            try:
                if not order.qimen_bill_code:  # a back-office order has no POS reference
                    order.qimen_bill_code = order._qimen_default_bill_code() or order.name
                snapshots.append((order, event, payload.build(order, event, changes)))
            except Exception:
                _logger.exception("Qimen sync: no snapshot of order %s for %s", order.id, event)
                continue
            if order.qimen_config_error:
                order.qimen_config_error = False
        return snapshots

    def _qimen_sync_problems(self):
        self.ensure_one()
        return self.company_id._qimen_config_problems() + self.config_id._qimen_unrouted_problems()

    def _qimen_requeue(self):
        """Queue the updates an order missed while the sync settings were incomplete,
        in the order they happened (the hooks record them on the order either way)."""
        updates = []
        for order in self.filtered("qimen_config_error"):
            happened = sorted(  # by date, then in the order events happen
                (order[date_field] or datetime.max, rank, event)
                for rank, (event, (name, values, date_field)) in enumerate(RECORDED_EVENTS.items())
                if order[name] in values
            )
            updates += [(order, event) for _date, _rank, event in happened]
        self._qimen_queue(updates)
