import json
import logging
import threading
from datetime import datetime, timedelta
from urllib.parse import urlencode

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
from odoo.tools import SQL
from odoo.tools.sql import create_index

from ..const import ERP_STATUS_SELECTION, GC_BATCH, GC_SECONDS
from ..dispatch.queue_sql import delete_in_batches
from ..orm_rows import insert_sql
from ..qimen.client import redact_params
from ..qimen.inbound import (
    query_dict,
)
from ..qimen.text import storable
from ..sql_batch import execute_with_batch

_logger = logging.getLogger(__name__)
LOGGED_BODY_CHARS = 4000
KEEP_LOGS_DAYS = 90
# A call rejected before it is authenticated can come from anyone: store little of it,
# and only so many per window; the others are counted in one row per window.
UNAUTHENTICATED_STORED_CHARS = 1000
FLOOD_WINDOW_MINUTES = 60
FLOOD_STORED_CALLS = 100
# counts that could not be written (the counter row was busy), added to the next write
_uncounted = {"calls": 0}
_uncounted_lock = threading.Lock()


def logged_body(body, content_type):
    """The body as logged: truncated, a form body's signature masked, and storable
    whatever it holds (NUL, undecodable bytes)."""
    if not isinstance(body, bytes) or not body:
        return ""
    text = body[:LOGGED_BODY_CHARS].decode("utf-8", "replace")
    if content_type == "application/x-www-form-urlencoded":
        text = urlencode(redact_params(query_dict(text)))
    return storable(text)


def logged_query(query, max_chars=None):
    """The query as logged: signature masked, names and values storable, and at most
    about ``max_chars`` characters of them."""
    logged, budget = {}, max_chars
    for name, value in redact_params(query).items():
        if budget is not None and budget <= 0:
            logged["…"] = f"{len(query) - len(logged)} more parameters not stored"
            break
        logged[storable(name, budget)] = text = storable(value, budget)
        if budget is not None:
            budget -= len(name) + len(text)
    return logged


class AlreadyApplied(Exception):
    """The call was applied already (maybe by a transaction that committed while this
    one waited for it)."""


class QimenCallbackLog(models.Model):
    """The exchange log of the callback endpoint: every call the ERP made, accepted or not.

    It stores calls (an applied one under its identity, so that a replay changes
    nothing), counts floods of unauthenticated calls, and cleans up; the handling is
    ``qimen.callback.handler``'s."""

    _name = "qimen.callback.log"
    _description = "Qimen ERP Callback"
    _order = "id desc"
    _rec_name = "bill_code"

    company_id = fields.Many2one("res.company", index=True, readonly=True)
    order_id = fields.Many2one("pos.order", index=True, ondelete="set null", readonly=True)
    method = fields.Char(readonly=True)
    bill_code = fields.Char(index=True, readonly=True)
    status = fields.Selection(
        ERP_STATUS_SELECTION,
        string="ERP Status",
        readonly=True,
    )
    result = fields.Selection(
        [
            ("applied", "Applied"),
            ("recorded", "Recorded, order unchanged"),
            ("duplicate", "Repeat, ignored"),
            ("failed", "Failed"),
            ("rejected", "Rejected"),
            ("counted", "Rejected, counted only"),
        ],
        required=True,
        index=True,
        readonly=True,
    )
    code = fields.Char("Reply Code", readonly=True)
    message = fields.Text(readonly=True)
    http_status = fields.Integer("HTTP Status", readonly=True)
    remote_addr = fields.Char("From", readonly=True)
    query = fields.Json(readonly=True, help="Query parameters, signature masked")
    body = fields.Text(readonly=True, help="Body as received (truncated)")
    query_text = fields.Text("Query Parameters", compute="_compute_query_text")
    request_id = fields.Char("Request ID", readonly=True, help="The gateway's request_id")
    calls = fields.Integer(
        default=1,
        readonly=True,
        help="Calls this line represents: 1, except on the line of an hour that counts the "
        "unauthenticated calls rejected beyond those stored one by one.",
    )
    call_key = fields.Char(
        readonly=True,
        help="What identifies an applied or recorded call (its request_id, else a digest of "
        "its signed content): a replay of it answers success and changes nothing.",
    )

    _sql_constraints = [
        (
            "call_key_unique",
            "UNIQUE(company_id, call_key)",
            "This ERP call was already applied.",
        ),
    ]

    def init(self):
        create_index(
            self.env.cr, "qimen_callback_log_create_date_index", self._table, ["create_date"]
        )
        # the rejections of unknown callers of the current window are counted often
        create_index(
            self.env.cr,
            "qimen_callback_log_unauthenticated_index",
            self._table,
            ["create_date"],
            where="company_id IS NULL",
        )

    @api.depends("query")
    def _compute_query_text(self):
        for log in self:
            log.query_text = json.dumps(log.query or {}, ensure_ascii=False, indent=2)

    # -- storing calls ----------------------------------------------------------------
    @api.model
    def _store_unauthenticated(self, log, query):
        """Bound what calls of unknown origin store: a capped query and body for the first
        ``FLOOD_STORED_CALLS`` of each window, one counter row for the others. Return
        whether ``log`` is to be stored."""
        log["query"] = logged_query(query, UNAUTHENTICATED_STORED_CHARS)
        log["body"] = storable(log["body"], UNAUTHENTICATED_STORED_CHARS)
        # a refusal's message may quote what the caller sent (a method, a customerid)
        log["message"] = storable(log["message"], UNAUTHENTICATED_STORED_CHARS)
        now = fields.Datetime.now()
        length = timedelta(minutes=FLOOD_WINDOW_MINUTES)
        window = datetime.min + (now - datetime.min) // length * length
        in_window = [("company_id", "=", False), ("create_date", ">=", window)]
        stored = self.search_count([*in_window, ("result", "!=", "counted")], FLOOD_STORED_CALLS)
        if stored < FLOOD_STORED_CALLS:
            return True
        counter = self.search([*in_window, ("result", "=", "counted")], limit=1)
        with _uncounted_lock:
            calls, _uncounted["calls"] = _uncounted["calls"] + 1, 0
        if not counter:
            _logger.warning(
                "Qimen callback: more than %s unauthenticated calls rejected since %s UTC; "
                "the next ones of this window are counted, not stored",
                FLOOD_STORED_CALLS,
                window,
            )
        try:  # concurrent floods contend for the counter: never wait for it
            with self.env.cr.savepoint(flush=False):
                if counter:
                    self.env.cr.execute(
                        SQL(
                            "UPDATE qimen_callback_log SET calls = calls + %s, write_date = %s "
                            "WHERE id = (SELECT id FROM qimen_callback_log WHERE id = %s "
                            "FOR NO KEY UPDATE NOWAIT)",
                            calls,
                            now,
                            counter.id,
                        ),
                        log_exceptions=False,
                    )
                else:
                    self.create(
                        {
                            "result": "counted",
                            "calls": calls,
                            "message": self.env._(
                                "Unauthenticated calls rejected in this hour beyond the "
                                "first %s, counted but not stored",
                                FLOOD_STORED_CALLS,
                            ),
                        }
                    ).flush_recordset()
        except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
            with _uncounted_lock:
                _uncounted["calls"] += calls
        return False

    @api.model
    def _store_applied(self, log, order, result, message, key):
        """Log the call as applied (or recorded) under its identity, in one statement
        (this is the hot path): the unique (company, key) makes it insert nothing for a
        replay; a transaction with the same call waits for the first one, then gets a
        serialization failure, and Odoo runs it again, when it finds the first. Raise
        :class:`AlreadyApplied` for a replay (the caller rolls back what it did)."""
        vals = dict(
            log,
            order_id=order.id,
            result=result,
            message=message,
            code="1",
            http_status=200,
            call_key=key,
            calls=1,
            query=json.dumps(log.get("query") or {}, ensure_ascii=False),
        )
        now = self.env.cr.now()
        vals.update(create_uid=self.env.uid, write_uid=self.env.uid, create_date=now)
        vals["write_date"] = now
        execute_with_batch(  # with the call's note, when it waits (see _apply)
            self.env.cr,
            SQL(
                "%s ON CONFLICT (company_id, call_key) DO NOTHING RETURNING id",
                insert_sql(self._table, vals),
            ),
            log_exceptions=False,  # a serialization failure is expected when racing
        )
        if not self.env.cr.rowcount:
            raise AlreadyApplied()

    @api.autovacuum
    def _gc_old_logs(self, commit=True):
        """Delete calls logged more than KEEP_LOGS_DAYS ago, in bounded batches, each
        committed (``commit=False``: for a caller that owns its transaction)."""
        before = fields.Datetime.now() - timedelta(days=KEEP_LOGS_DAYS)
        deleted = delete_in_batches(
            self.env.cr,
            SQL.identifier(self._table),
            SQL("create_date < %s", before),
            GC_BATCH,
            GC_SECONDS,
            commit=commit,
        )
        self.invalidate_model()
        return deleted
