"""The callback's business side, as payment's controllers hand notifications over: the
ERP's call is verified (app key, customerid, signature, timestamp) before anything of an
order is read, routed to its order, applied there by
``pos.order._qimen_handle_notification_data``, stored in ``qimen.callback.log``, and
answered in Qimen's format."""

import logging

from odoo import api, models, tools
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
from odoo.tools import SQL

from ..orm_rows import cache_rows, columns
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
from ..sql_batch import sql_batch
from .pos_config import CALLBACK_SHOP_FIELDS
from .qimen_callback_log import AlreadyApplied, logged_body, logged_query
from .res_company import CALLBACK_COMPANY_FIELDS, readers_lang_sql

_logger = logging.getLogger(__name__)
# what a call reads of the company that receives it
COMPANY_FIELDS = [
    "qimen_callback_secret",
    "qimen_app_secret",
    "qimen_callback_max_skew",
    "name",
    "alias_domain_id",
]


class QimenCallbackHandler(models.AbstractModel):
    """Verify, route, apply and answer one call of the ERP (the controller only reads
    the HTTP request)."""

    _name = "qimen.callback.handler"
    _description = "Qimen ERP Callback Handler"

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
        log = {  # its query: the verified call's, else (rejected) as received, below
            "method": storable(query.get("method") or "", 200),
            "remote_addr": remote_addr,
            "body": logged_body(body, content_type),
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
        if "query" not in log:
            log["query"] = logged_query(query)
        logs = self.env["qimen.callback.log"]
        if log.get("company_id") or logs._store_unauthenticated(log, query):
            logs.create(log)
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
        check_signature(call, company._qimen_callback_secret())
        check_timestamp(call, company.qimen_callback_max_skew or 600)
        return company

    def _receiving_company(self, app_key, customerid):
        """The company that receives calls for ``app_key`` (and ``customerid``, the
        company's or one of its shops', when several companies share the app key), with
        what a call reads of it in cache: its secrets and skew, and its name and catchall
        (the reply-to of the chatter note)."""
        candidates = self._callback_companies().get(app_key)
        if not candidates:
            raise InboundError(29, "isv.appkey-not-exists", self.env._("Invalid app key"), 403)
        if customerid:
            candidates = [row for row in candidates if customerid in row[-1]]
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
        row = candidates[0]
        # the call acts for this company (env.company, without reading the public user),
        # and writes its notes in its readers' language
        companies = (
            self.env["res.company"]
            .sudo()
            .with_context(allowed_company_ids=[row[0]], qimen_reader_lang=row[-2] or "en_US")
        )
        return cache_rows(companies, [row[:-2]], COMPANY_FIELDS)

    @tools.ormcache()
    def _callback_companies(self):
        """``{app key: ((id, *COMPANY_FIELDS, readers' language, customerids), ...)}`` of
        the companies that receive calls, ``customerids`` those of the company and its
        active shops. Read for every call before anything else is known, hence cached
        (the planning alone of this query took 0.2 ms a call), as one entry: an unknown
        app key adds none (a flood of them cannot evict Odoo's other cached values).
        What it reads clears the registry's cache when written, in every worker: the
        companies' and shops' fields here, and, for the readers' language, the users'
        groups, companies and language (as Odoo does) and the partners' language and
        the companies' names written on their partners (see res_partner.py)."""
        self.env["res.company"].flush_model(CALLBACK_COMPANY_FIELDS)
        self.env["pos.config"].flush_model(CALLBACK_SHOP_FIELDS)
        self.env.cr.execute(
            SQL(
                """SELECT company.qimen_app_key, %(columns)s, %(lang)s,
                          ARRAY(SELECT shop.qimen_customerid FROM pos_config shop
                                 WHERE shop.company_id = company.id AND shop.active
                                   AND shop.qimen_customerid IS NOT NULL)
                          || company.qimen_customerid
                     FROM res_company company
                    WHERE company.active AND company.qimen_enabled
                      AND company.qimen_app_key IS NOT NULL
                 ORDER BY company.id""",
                columns=columns("company", ["id", *COMPANY_FIELDS]),
                lang=readers_lang_sql(self.env),
            )
        )
        companies = {}
        for app_key, *row, customerids in self.env.cr.fetchall():
            ids = frozenset(value for value in customerids if value)
            companies.setdefault(app_key, []).append((*row, ids))
        return {app_key: tuple(rows) for app_key, rows in companies.items()}

    def _apply(self, call, company, log, fmt, last_try):
        """Apply a verified call once: a replay of an applied call (same identity) answers
        success and changes nothing, even when both arrive together; so does a call under
        a new identity that tells nothing new (logged as a repeat, under its identity).

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
            with sql_batch(self.env.cr):  # the note goes with the log row: one round trip
                result = order._qimen_handle_notification_data(params)
                message = {
                    "applied": "OK",
                    "recorded": self.env._("Recorded; the order is unchanged"),
                    "duplicate": self.env._("Nothing new: the ERP reported this already"),
                }[result]
                self.env["qimen.callback.log"]._store_applied(
                    log, order, result, message, call_key(call)
                )
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
        except AlreadyApplied:
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

    def _reply(
        self, log, fmt, result, message, order=None, code=None, sub_code=None, http_status=200
    ):
        success = result in ("applied", "duplicate")
        code = "1" if success else (code or "0")
        self.env["qimen.callback.log"].create(
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
