import json
import logging
import threading
from datetime import datetime, timedelta
from urllib.parse import urlencode

from odoo import api, fields, models
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
from odoo.tools import SQL
from odoo.tools.sql import create_index

from ..const import ERP_STATUS_SELECTION
from ..qimen.client import redact_params
from ..qimen.const import INBOUND_METHODS
from ..qimen.errors import QimenValidationError
from ..qimen.inbound import (
    InboundError,
    build_reply,
    call_key,
    check_signature,
    check_timestamp,
    error_reply,
    parse_call,
    query_dict,
    validate_params,
)
from ..qimen.text import storable
from .qimen_sync_job import delete_in_batches

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


def _logged_body(body, content_type):
    """The body as logged: truncated, a form body's signature masked, and storable
    whatever it holds (NUL, undecodable bytes)."""
    if not isinstance(body, bytes) or not body:
        return ""
    text = body[:LOGGED_BODY_CHARS].decode("utf-8", "replace")
    if content_type == "application/x-www-form-urlencoded":
        text = urlencode(redact_params(query_dict(text)))
    return storable(text)


def _logged_query(query, max_chars=None):
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


class _AlreadyApplied(Exception):
    """The call was applied already (maybe by a transaction that committed while this
    one waited for it)."""


class QimenCallbackLog(models.Model):
    """The exchange log of the callback endpoint: every call the ERP made, accepted or not.

    Handling lives here so that the controller stays a thin adapter of HTTP."""

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

    # -- handling -----------------------------------------------------------------------
    @api.model
    def _handle_call(
        self, http_method, query_string, body, content_type, remote_addr, last_try=True
    ):
        """Verify and apply one call; return ``(http_status, reply_bytes, content_type)``.

        ``body`` is the raw body of a POST (None for another method), or the
        :class:`InboundError` that refused it unread (too large). Whatever happens, the
        answer is a Qimen reply and the call is logged. ``last_try``: Odoo will not run
        the request again after a serialization failure."""
        query = query_dict(query_string or b"")  # lenient: only to log and to answer
        fmt = "xml" if query.get("format", "").lower() == "xml" else "json"
        log = {
            "query": _logged_query(query),
            "method": storable(query.get("method") or "", 200),
            "remote_addr": remote_addr,
            "body": _logged_body(body, content_type),
        }
        try:
            return self._process(http_method, query_string, body, content_type, log, last_try)
        except InboundError as exc:
            error, result = exc, "rejected"
        except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
            raise  # Odoo runs the request again in a new transaction
        except Exception:
            _logger.exception("Qimen callback from %s: unexpected error", remote_addr)
            self._undo()  # the transaction may be aborted: only the log row is written
            error = InboundError(
                15, "isp.internal-error", self.env._("Internal error, try again later"), 503
            )
            result = "failed"
        log.update(
            result=result, code=error.code, message=error.message, http_status=error.http_status
        )
        if log.get("company_id") or self._store_unauthenticated(log, query):
            self.create(log)
            _logger.warning(
                "Qimen callback from %s %s: %s %s %s",
                remote_addr,
                result,
                error.code,
                error.sub_code,
                log["message"],
            )
        reply, ctype = error_reply(error, fmt)
        return error.http_status, reply, ctype

    def _store_unauthenticated(self, log, query):
        """Bound what calls of unknown origin store: a capped query and body for the first
        ``FLOOD_STORED_CALLS`` of each window, one counter row for the others. Return
        whether ``log`` is to be stored."""
        log["query"] = _logged_query(query, UNAUTHENTICATED_STORED_CHARS)
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

    def _process(self, http_method, query_string, body, content_type, log, last_try):
        if http_method != "POST":
            raise InboundError(
                22, "isv.invalid-method", self.env._("POST signed Qimen calls to this URL."), 405
            )
        if isinstance(body, InboundError):
            raise body
        call = parse_call(query_string, body, content_type)
        company = self._verify(call)
        log.update(
            company_id=company.id,
            bill_code=call.params.get("orderBillCode"),
            method=call.method,
            query=redact_params(call.query),
        )
        try:
            validate_params(call.params)
        except QimenValidationError as exc:
            raise InboundError(41, "isv.invalid-parameter:" + exc.field, str(exc)) from None
        log["status"] = call.params["status"]
        return self._apply(call, company, log, call.fmt, last_try)

    def _verify(self, call):
        """Authenticate the call: known app key and customerid, signature, timestamp.

        Only configuration is read here, nothing of the orders."""
        if call.method not in INBOUND_METHODS:
            raise InboundError(
                22, "isv.invalid-method", self.env._("Invalid method %s", call.method)
            )
        app_key = call.app_key or call.target_app_key  # both name the receiving app
        if not app_key:
            raise InboundError(28, "isv.missing-app-key", self.env._("Missing app key"), 403)
        company = self._receiving_company(app_key, call.customerid)
        # only what a call uses (a company has a hundred columns): the secret and the skew,
        # and its catchall (the reply-to of the chatter note)
        company.fetch(
            [
                "qimen_callback_secret",
                "qimen_app_secret",
                "qimen_callback_max_skew",
                "name",
                "alias_domain_id",
            ]
        )
        check_signature(call, company._qimen_callback_secret())
        check_timestamp(call, company.qimen_callback_max_skew or 600)
        return company

    def _receiving_company(self, app_key, customerid):
        """The company that receives calls for ``app_key`` (and ``customerid``, the
        company's or one of its shops', when several companies share the app key).
        One query: it runs for every call, before anything else is known."""
        self.env.cr.execute(
            SQL(
                """SELECT company.id,
                          company.qimen_customerid = %(customerid)s OR EXISTS (
                              SELECT 1 FROM pos_config shop
                               WHERE shop.company_id = company.id AND shop.active
                                 AND shop.qimen_customerid = %(customerid)s),
                          partner.lang
                     FROM res_company company
                     JOIN res_partner partner ON partner.id = company.partner_id
                    WHERE company.active AND company.qimen_enabled
                      AND company.qimen_app_key = %(app_key)s""",
                app_key=app_key,
                customerid=customerid or "",
            )
        )
        candidates = self.env.cr.fetchall()
        if not candidates:
            raise InboundError(29, "isv.appkey-not-exists", self.env._("Invalid app key"), 403)
        if customerid:
            candidates = [row for row in candidates if row[1]]
            if not candidates:
                raise InboundError(
                    41,
                    "isv.invalid-parameter:customerid",
                    self.env._("Unknown customerid %s", customerid),
                    403,
                )
        if len(candidates) > 1:
            raise InboundError(
                41,
                "isv.invalid-parameter:customerid",
                self.env._("customerid is required to choose the company"),
                400,
            )
        company_id, _matches, lang = candidates[0]
        # the call acts for this company (env.company, without reading the public user),
        # and writes its notes in its language (without reading its partner)
        companies = (
            self.env["res.company"]
            .sudo()
            .with_context(allowed_company_ids=[company_id], qimen_reader_lang=lang)
        )
        return companies.browse(company_id)

    def _apply(self, call, company, log, fmt, last_try):
        """Apply a verified call once: a replay of an applied call (same identity) answers
        success and changes nothing, even when both arrive together.

        A call is one transaction: when it fails, it is rolled back whole, then logged
        (cheaper than a savepoint around every call: this is the hot path)."""
        params = call.params
        log["request_id"] = call.query.get("request_id") or False
        orders = company.env["pos.order"]  # with the company's reader language
        order = orders
        try:
            order, error = orders._qimen_find_by_bill_code(
                company, params["orderBillCode"], lock=True
            )
            if error:
                return self._reply(log, fmt, "failed", error, order=order)
            applied = order._qimen_apply_erp_update(params)
            message = "OK" if applied else self.env._("Recorded; the order is unchanged")
            result = "applied" if applied else "recorded"
            self._claim(log, order, result, message, call_key(call))
        except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
            if not last_try:
                raise  # Odoo runs the request again, in a new transaction
            self._undo()
            return self._reply(
                log,
                fmt,
                "failed",
                self.env._("The order is being updated by another call, try again later"),
                order=order,
                code="15",
                sub_code="isp.concurrent-update",
                http_status=503,
            )
        except _AlreadyApplied:
            self._undo()
            return self._reply(log, fmt, "duplicate", self.env._("Already applied"), order=order)
        except QimenValidationError as exc:
            self._undo()
            return self._reply(log, fmt, "failed", str(exc), order=order)
        except Exception:
            _logger.exception("Qimen callback: could not apply %s", params.get("orderBillCode"))
            self._undo()
            return self._reply(
                log,
                fmt,
                "failed",
                self.env._("Internal error, try again later"),
                order=order,
                code="15",
                sub_code="isp.internal-error",
                http_status=503,
            )
        _logger.info("Qimen callback %s %s", log.get("bill_code"), result)
        reply, ctype = build_reply(True, message, fmt)
        return 200, reply, ctype

    def _undo(self):
        """Roll back what the failed call did (only its log row is then written), as
        Odoo does before it runs a request again."""
        self.env.cr.rollback()
        self.env.reset()

    def _claim(self, log, order, result, message, key):
        """Log the call as applied (or recorded) under its identity, in one statement
        (this is the hot path): the unique (company, key) makes it insert nothing for a
        replay; a transaction with the same call waits for the first one, then gets a
        serialization failure, and Odoo runs it again, when it finds the first. Raise
        :class:`_AlreadyApplied` for a replay (the caller rolls back what it did)."""
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
        vals = {name: value if value is not False else None for name, value in vals.items()}
        now = self.env.cr.now()
        vals.update(create_uid=self.env.uid, write_uid=self.env.uid, create_date=now)
        vals["write_date"] = now
        self.env.cr.execute(
            SQL(
                "INSERT INTO qimen_callback_log (%s) VALUES (%s) "
                "ON CONFLICT (company_id, call_key) DO NOTHING RETURNING id",
                SQL(", ").join(SQL.identifier(name) for name in vals),
                SQL(", ").join(SQL("%s", value) for value in vals.values()),
            ),
            log_exceptions=False,  # a serialization failure is expected when racing
        )
        if not self.env.cr.rowcount:
            raise _AlreadyApplied()

    def _reply(
        self, log, fmt, result, message, order=None, code=None, sub_code=None, http_status=200
    ):
        success = result in ("applied", "duplicate")
        code = "1" if success else (code or "0")
        self.create(
            dict(
                log,
                result=result,
                code=code,
                message=message,
                http_status=http_status,
                order_id=order.id if order else False,
            )
        )
        _logger.info("Qimen callback %s %s: %s", log.get("bill_code"), result, message)
        reply, ctype = build_reply(success, message, fmt, code=code, sub_code=sub_code)
        return http_status, reply, ctype

    @api.autovacuum
    def _gc_old_logs(self):
        """Delete calls logged more than KEEP_LOGS_DAYS ago, in bounded batches."""
        before = fields.Datetime.now() - timedelta(days=KEEP_LOGS_DAYS)
        deleted = delete_in_batches(
            self.env, SQL.identifier(self._table), SQL("create_date < %s", before)
        )
        self.invalidate_model()
        return deleted
