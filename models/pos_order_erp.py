"""What the ERP's calls do to an order (the callback verifies them first, see
``controllers/main.py``): the transition table of ``qimen/inbound.py`` applied, what the
ERP reported kept apart from the store's facts, and a note on the order."""

from markupsafe import Markup

from odoo import api, fields, models
from odoo.tools import SQL, format_datetime
from odoo.tools.mail import generate_tracking_message_id

from ..const import ORDER_WIRE_FIELDS
from ..orm_rows import cache_rows, columns, insert_sql
from ..qimen.inbound import shipped_quantities, transition
from ..qimen.timeutil import parse_gmt8_to_utc_naive
from ..sql_batch import execute_soon
from .pos_order_notices import erp_void_summary

# what an ERP call reads of an order before it writes it
ERP_ORDER_FIELDS = [
    "state",
    "company_id",
    "qimen_erp_status",
    "qimen_erp_reported",
    "qimen_erp_last_status",
    "qimen_erp_last_report",
    "qimen_cancelled",
    "qimen_finished",
]
# what mail.message's create invalidates of the document of a new message
MESSAGES_FIELDS = ["message_ids", "message_needaction", "message_needaction_counter"]
# what addresses a call rather than tells of the order (the lines are kept apart)
NOT_REPORTED = ("orderBillCode", "status", "customerid", "mx_list")


def reported_fields(params):
    """What a call tells of the order besides its status and lines (non-empty values)."""
    return {name: value for name, value in params.items() if value and name not in NOT_REPORTED}


class PosOrder(models.Model):
    _inherit = "pos.order"

    # -- inbound: the ERP updates the order ------------------------------------------------
    @api.model
    def _qimen_find_by_bill_code(self, company, bill_code, lock=False):
        """Return ``(order, error)``: the company's order with this ERP bill code.

        ``lock``: lock it until the transaction ends, so that ERP calls about one order
        apply one after the other, and read what an ERP call reads of it in the same
        statement. When another transaction changed the order since this one began,
        PostgreSQL raises a serialization failure and Odoo runs the request again: that is
        expected, so it is not logged as a bad query."""
        if lock:
            self.env.cr.execute(
                SQL(
                    "SELECT %s FROM pos_order WHERE company_id = %s AND qimen_bill_code = %s "
                    "LIMIT 2 FOR NO KEY UPDATE",
                    columns("pos_order", ["id", *ERP_ORDER_FIELDS]),
                    company.id,
                    bill_code,
                ),
                log_exceptions=False,
            )
            orders = cache_rows(self, self.env.cr.fetchall(), ERP_ORDER_FIELDS)
        else:
            orders = self.search(
                [("company_id", "=", company.id), ("qimen_bill_code", "=", bill_code)], limit=2
            )
        if not orders:
            return self, self.env._("Order %s not found", bill_code)
        if len(orders) > 1:
            return self, self.env._("Several orders have the bill code %s", bill_code)
        return orders, None

    def _qimen_handle_notification_data(self, params):
        """Apply what the ERP says of the order as the transition table says (README).

        Return ``"applied"``, ``"recorded"`` (only the ERP's latest report is noted: the
        order is unchanged), or ``"duplicate"``: the call tells nothing new (the ERP sends
        a call again under a new request_id when its answer timed out), and nothing is
        written, no note either. A void cancels a draft order, and asks a POS manager to
        refund a paid order (Odoo cannot cancel it)."""
        self.ensure_one()
        # only what is used (an order has a hundred columns; this runs on every ERP call):
        # nothing when the order was found and locked by the call (read with it)
        self.fetch(ERP_ORDER_FIELDS)
        status = params["status"]
        shipped_lines = self.env["qimen.erp.shipped.line"]
        shipped = {}
        if params.get("mx_list"):  # most calls list no lines: no query for them
            shipped = shipped_lines._qimen_rounded(shipped_quantities(params["mx_list"]))
        if self._qimen_erp_repeats(params, shipped):
            return "duplicate"
        current = self.qimen_erp_status
        applied, new_status = transition(
            status,
            current,
            voided=self.qimen_cancelled or current == "3",
            finished=self.qimen_finished or current == "4",
        )
        order = self.with_context(qimen_from_erp=True)
        values = self._qimen_erp_values(params, new_status) if applied else {}
        # the order tracks none of these fields: skip mail's tracking and followers
        order.with_context(tracking_disable=True).write(
            dict(values, **self._qimen_erp_report_values(params))
        )
        if shipped:
            shipped_lines = shipped_lines._qimen_replace(self, shipped)
        if applied and status == "3" and self.state == "draft":
            order.action_pos_order_cancel()
        elif applied and status == "3" and self.state in ("paid", "done", "invoiced"):
            reason = params.get("zf_message")
            self._qimen_ask_manager(
                erp_void_summary,
                lambda env: env._(
                    "The ERP voided this paid order (%(reason)s). Odoo cannot cancel a "
                    "paid order: refund it in the Point of Sale.",
                    reason=reason or env._("no reason given"),
                ),
            )
        self._qimen_post_erp_update(params, applied, shipped_lines)
        return "applied" if applied else "recorded"

    def _qimen_erp_said(self):
        """The latest value of each field the ERP told of the order: the fields of its
        applied calls, and those of its latest report, applied or only recorded."""
        return {**(self.qimen_erp_reported or {}), **(self.qimen_erp_last_report or {})}

    def _qimen_erp_repeats(self, params, shipped):
        """Whether the call tells nothing new: the ERP's latest report has its status,
        the ERP told each of its fields with that value already, and it lists no lines or
        the lines shown. Its timestamp and request_id, which address the call, are no
        news: a retry of a call whose answer timed out changes nothing."""
        if params["status"] != self.qimen_erp_last_status:
            return False
        said = self._qimen_erp_said()
        if any(said.get(name) != value for name, value in reported_fields(params).items()):
            return False
        return not shipped or self.qimen_erp_shipped_line_ids._qimen_quantities() == shipped

    def _qimen_erp_values(self, params, new_status):
        """What an applied call writes: the ERP's status, when, and its fields (merged
        with what it reported before); never the store's own facts."""
        return {
            "qimen_erp_status": new_status,
            "qimen_erp_status_date": fields.Datetime.now(),
            "qimen_erp_reported": dict(self.qimen_erp_reported or {}, **reported_fields(params)),
        }

    def _qimen_erp_report_values(self, params):
        """What every call but a repeat writes, applied or only recorded: the ERP's
        latest report, shown next to the status that drives the order."""
        return {
            "qimen_erp_last_status": params["status"],
            "qimen_erp_last_report_date": fields.Datetime.now(),
            "qimen_erp_last_report": reported_fields(params),
        }

    def _qimen_post_erp_update(self, params, applied=True, shipped_lines=None):
        """A note of what the ERP said, in the language of the company (its readers; the
        context key ``qimen_reader_lang`` may give it). ``shipped_lines``: those the
        call's lines were matched into, summed up in the note."""
        self.ensure_one()
        order = self._qimen_for_readers()
        env = order.env
        labels = dict(order._fields["qimen_erp_status"]._description_selection(env))
        status = labels[params["status"]]
        if applied:
            title = env._("The ERP reported this order as %s.", status)
        elif params["status"] == "5":
            title = env._("The ERP reported this order as %s; the order is unchanged.", status)
        elif self._qimen_voided():  # by the store, or by the ERP earlier
            title = env._("The ERP reported this order as %s; not applied: it is voided.", status)
        else:
            title = env._("The ERP reported this order as %s; not applied: it is finished.", status)
        shipped_lines = (shipped_lines or self.env["qimen.erp.shipped.line"]).with_env(env)
        details = Markup().join(
            Markup("<li>%s: %s</li>") % (label, value)
            for label, value in order._qimen_erp_details(params, shipped_lines)
        )
        self._qimen_log_note(Markup("<p>%s</p><ul>%s</ul>") % (title, details))

    def _qimen_log_note(self, body):
        """Log ``body`` (markup, its values escaped) in the order's chatter: the note
        ``_message_log`` logs (by OdooBot, no notification, no follower), in one
        statement. This runs on every ERP call, and the ORM's create of a message costs
        more than the rest of the call (the defaults of its fields, a sanitizer for a body
        built escaped, the cache and the triggers of its sixty fields); modules that
        extend ``mail.message.create`` do not see these notes. The order's messages in
        cache are invalidated, as that create invalidates them."""
        self.ensure_one()
        env = self.env
        xmlid_to_res_id = env["ir.model.data"]._xmlid_to_res_id
        # the reply-to is the company's catchall: read only what it needs; a company
        # without an email domain has none (what mail's own method finds, in 0.15 ms)
        company = env.company
        company.fetch(["name", "alias_domain_id"])
        reply_to = False
        if company.alias_domain_id:
            reply_to = env["mail.thread"]._notify_get_reply_to(default=False)[False]
        now = env.cr.now()
        values = {
            "model": self._name,
            "res_id": self.id,
            "message_type": "notification",
            "subtype_id": xmlid_to_res_id("mail.mt_note"),
            "is_internal": True,
            "author_id": xmlid_to_res_id("base.partner_root"),
            "email_from": False,
            "reply_to": reply_to,
            "message_id": generate_tracking_message_id("message-notify"),
            "email_add_signature": False,
            "body": str(body),
            "date": fields.Datetime.now(),
            "create_uid": env.uid,
            "create_date": now,
            "write_uid": env.uid,
            "write_date": now,
        }
        execute_soon(env.cr, insert_sql("mail_message", values))  # with the call's log row
        self.invalidate_recordset(MESSAGES_FIELDS)

    def _qimen_erp_details(self, params, shipped_lines=None, tz=None):
        """``(label, value)`` of each field of an ERP call, named as its readers know it
        (the order's field labels, in the environment's language); its lines are summed
        up from ``shipped_lines``, those they were matched into. The ERP's times (China
        time) are shown in the time zone ``tz``, or labelled GMT+8 without one (a note,
        read in any zone)."""
        env = self.env
        field_names = {wire: name for name, wire in ORDER_WIRE_FIELDS.items()}
        field_names.update(cancle="qimen_cancelled", finish="qimen_finished")
        other_labels = {
            "fhck_code": env._("Shipping Warehouse"),
            "extendProps": env._("Extra Properties"),
            "customerid": env._("Customer ID"),
        }
        details = []
        for name, value in params.items():
            if name in ("orderBillCode", "status") or not value:
                continue
            if name == "mx_list":
                if shipped_lines:
                    details.append((env._("Lines"), shipped_lines._qimen_summary()))
                continue
            field = self._fields.get(field_names.get(name, ""))
            if field is None:
                details.append((other_labels.get(name, name), value))
                continue
            shown = value
            if field.type == "selection":
                shown = dict(field._description_selection(env)).get(value, value)
            elif field.type == "boolean":  # the ERP's flags: cancle=1, finish=1
                shown = env._("Yes") if str(value).lower() in ("1", "true") else env._("No")
            elif field.type == "datetime":
                shown = _erp_time(env, value, tz)
            details.append((field._description_string(env), shown))
        return details


def _erp_time(env, value, tz):
    """A time the ERP sent (GMT+8) in the zone ``tz``, else as sent, labelled GMT+8 (the
    callback checked its format: a value that does not parse is shown as sent)."""
    try:
        moment = parse_gmt8_to_utc_naive(str(value)) if tz else None
    except ValueError:
        moment = None
    if moment:
        return format_datetime(env, moment, tz=tz, dt_format=False)
    return f"{value} (GMT+8)"
