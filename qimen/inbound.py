"""The receiving side: parse a call the gateway forwards, verify it, build replies.

The gateway sends system parameters in the query and the business fields as a raw
JSON object, an XML ``<request>`` or a form body, signed with the receiver's secret
over the sorted query (without ``sign``) followed by the raw body.
"""

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl

from lxml import etree

from .const import (
    API_SALESORDER_UPDATE,
    API_UPDATE_SALESORDER,
    CODE_SUCCESS,
    INBOUND_ENUMS,
    SALESORDER_UPDATE_FIELDS,
    SIGN_METHODS,
    UPDATE_SALESORDER_EXTRA_FIELDS,
)
from .errors import QimenValidationError, QimenXMLError
from .request import check_enums_and_dates
from .signing import string_to_sign, verify
from .timeutil import parse_gmt8
from .xmlsafe import element_to_data, parse_xml, xml_document

MAX_BODY_BYTES = 256 * 1024
READ_CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_SKEW = 600
INBOUND_FIELDS = SALESORDER_UPDATE_FIELDS + UPDATE_SALESORDER_EXTRA_FIELDS


class InboundError(Exception):
    """A call rejected before or while it is applied; becomes a Qimen error reply."""

    def __init__(self, code, sub_code, message, http_status=400):
        self.code = str(code)
        self.sub_code = sub_code
        self.message = message
        self.http_status = http_status
        super().__init__(f"{code} {sub_code}: {message}")


@dataclass
class InboundCall:
    """A parsed incoming call."""

    method: str
    query: dict
    params: dict
    fmt: str = "json"
    raw_body: bytes = b""
    body_kind: str = "none"
    form: dict = field(default_factory=dict)

    @property
    def app_key(self):
        return self.query.get("app_key", "")

    @property
    def target_app_key(self):
        return self.query.get("target_appkey") or self.query.get("target_app_key") or ""

    @property
    def customerid(self):
        return self.query.get("customerid") or self.params.get("customerid") or ""

    @property
    def sign_method(self):
        return (self.query.get("sign_method") or "md5").lower()


def normalize_method(method):
    """Accept the API name with or without its ``qimen.`` (or ``taobao.``) prefix."""
    method = (method or "").strip()
    for full in (API_UPDATE_SALESORDER, API_SALESORDER_UPDATE):
        if method == full or (full.endswith("." + method) and "." in method):
            return full
    return method


def query_dict(query, strict=False):
    """A query string (or mapping) as a dict of strings.

    ``strict``: raise :class:`InboundError` for what is not UTF-8 or holds a character
    that cannot be stored (NUL, a lone surrogate); else such text is replaced."""
    errors = "strict" if strict else "replace"
    try:
        if isinstance(query, (bytes, str)):
            text = query.decode("utf-8", errors) if isinstance(query, bytes) else query
            query = dict(parse_qsl(text, keep_blank_values=True, errors=errors))
        else:
            query = {str(k): (v[0] if isinstance(v, list) else v) for k, v in dict(query).items()}
    except UnicodeDecodeError:
        raise InboundError(41, "isv.invalid-parameter", "query string is not UTF-8") from None
    if strict:
        _check_text(query, "query string")
    return query


def _check_text(data, where):
    """Refuse NUL and lone surrogates in the names and values of ``data`` (nested dicts
    and lists too): PostgreSQL cannot store them, and no real call carries them."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for name, value in items:
        for text in (name, value):
            if isinstance(text, (dict, list)):
                _check_text(text, where)
            elif isinstance(text, str) and not _storable_text(text):
                field_name = name if isinstance(name, str) and _storable_text(name) else ""
                raise InboundError(
                    41,
                    "isv.invalid-parameter" + (f":{field_name}" if field_name else ""),
                    f"{field_name or where} holds a NUL or an invalid character",
                )


def _storable_text(text):
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. JSON "\ud800"
        return False
    return True


def read_body(stream, max_bytes=MAX_BODY_BYTES, content_length=None):
    """Read a request body from ``stream``, never more than ``max_bytes`` + 1 bytes:
    a larger body (declared or chunked) is refused without being read or buffered."""
    check_body_length(content_length, max_bytes)
    parts, size = [], 0
    while size <= max_bytes:
        data = stream.read(min(READ_CHUNK_BYTES, max_bytes + 1 - size))
        if not data:
            break
        parts.append(data)
        size += len(data)
    if size > max_bytes:
        raise _too_large(max_bytes)
    return b"".join(parts)


def check_body_length(content_length, max_bytes=MAX_BODY_BYTES):
    """Refuse a declared body larger than ``max_bytes`` before anything reads it."""
    if content_length and content_length > max_bytes:
        raise _too_large(max_bytes)


def _too_large(max_bytes):
    return InboundError(41, "isv.invalid-parameter", f"body larger than {max_bytes} bytes", 413)


def _parse_body(raw, content_type):
    """Return (kind, params) for a JSON, XML or form body (UTF-8, as the protocol says)."""
    content_type = (content_type or "").lower()
    text_start = raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if not raw.strip():
        return "none", {}
    if b"\x00" in raw:
        raise InboundError(41, "isv.invalid-parameter", "body holds a NUL byte")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InboundError(41, "isv.invalid-parameter", "body is not UTF-8") from None
    if text_start == b"{" or "json" in content_type:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InboundError(41, "isv.invalid-parameter", f"malformed JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise InboundError(41, "isv.invalid-parameter", "JSON body is not an object")
        if len(data) == 1 and isinstance(data.get("request"), dict):
            data = data["request"]
        return "json", data
    if text_start == b"<" or "xml" in content_type:
        try:
            root = parse_xml(raw, max_bytes=MAX_BODY_BYTES)
        except QimenXMLError as exc:
            raise InboundError(41, "isv.invalid-parameter", str(exc)) from None
        data = element_to_data(root)
        if not isinstance(data, dict):
            raise InboundError(41, "isv.invalid-parameter", "XML body has no fields")
        return "xml", data
    try:
        return "form", dict(
            parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        )
    except (UnicodeDecodeError, ValueError):
        raise InboundError(
            41, "isv.invalid-parameter", "body is neither JSON, XML nor a form"
        ) from None


def _stringify(params):
    """Business values as the API has them: strings, ``mx_list`` as a list of dicts."""
    result = {}
    for name, value in params.items():
        if name == "mx_list":
            result[name] = _mx_list(value)
        elif value is None:
            continue
        elif isinstance(value, (dict, list)):
            result[name] = json.dumps(value, ensure_ascii=False)
        else:
            result[name] = str(value).strip()
    return result


def _mx_list(value):
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise QimenValidationError("mx_list", "must be a JSON list of lines") from None
    if isinstance(value, dict):  # XML <mx_list><mx>..</mx></mx_list> or one line
        inner = list(value.values())
        value = (
            inner[0] if len(inner) == 1 and not {"sku", "goods_number"} & set(value) else [value]
        )
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(line, dict) for line in value):
        raise QimenValidationError("mx_list", "must be a list of {sku, goods_number}")
    return [{k: str(v) for k, v in line.items()} for line in value]


def parse_call(query, body, content_type="", max_bytes=MAX_BODY_BYTES):
    """Parse an incoming call; raise :class:`InboundError` when it is unreadable."""
    raw = body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    query = query_dict(query, strict=True)
    kind, data = _parse_body(raw, content_type)
    form = data if kind == "form" else {}
    if kind == "form":
        # What is signed must be exactly what is read: a name in both places is refused
        # (else a signed form could be replayed with, say, a fresh timestamp in the query).
        twice = sorted(set(data) & set(query))
        if twice:
            raise InboundError(
                41, "isv.invalid-parameter", f"given both in the query and the body: {twice}"
            )
        data = dict(data)
        # system parameters may travel in the form body too (the .NET SDK does that)
        for name in [name for name in data if name not in INBOUND_FIELDS]:
            query[name] = data.pop(name)
    try:
        _check_text(data, "body")
        params = _stringify(data)
    except QimenValidationError as exc:
        raise InboundError(41, "isv.invalid-parameter:" + exc.field, str(exc)) from None
    except RecursionError:
        raise InboundError(41, "isv.invalid-parameter", "body nested too deeply") from None
    _check_text(query, "query string")  # system parameters moved from a form body
    fmt = (query.get("format") or (kind if kind in ("json", "xml") else "json")).lower()
    return InboundCall(
        method=normalize_method(query.get("method")),
        query=query,
        params=params,
        fmt=fmt if fmt in ("json", "xml") else "json",
        raw_body=raw,
        body_kind=kind,
        form=form,
    )


def check_signature(call, secret):
    """Raise unless the call is signed with ``secret``: the query and the raw body, or
    the query and the form fields for a form body (``sign`` itself is never signed)."""
    signature = call.query.get("sign", "")
    if not signature:
        raise InboundError(24, "isv.missing-signature", "Missing signature")
    method = call.sign_method
    if method not in SIGN_METHODS:
        raise InboundError(25, "isv.invalid-signature", f"unsupported sign_method {method}", 401)
    signed, body = _signed_content(call)
    if not verify(signed, secret, signature, method, body):
        raise InboundError(25, "isv.invalid-signature", "Invalid signature", 401)


def _signed_content(call):
    """``(params, body)`` the signature covers: the query and the raw body, or the query
    and the form fields for a form body (their names are disjoint, see parse_call)."""
    if call.body_kind == "form":
        return {**call.query, **call.form}, None
    return call.query, call.raw_body or None


def call_key(call):
    """What identifies a call, to answer its replays without applying it twice: the
    gateway's ``request_id`` when it sends one, else a digest of the signed content
    (timestamp included, signature excluded)."""
    request_id = call.query.get("request_id", "").strip()
    if request_id:
        data = b"request_id\x00" + request_id.encode("utf-8")
    else:
        data = b"content\x00" + string_to_sign(*_signed_content(call))
    return hashlib.sha256(data).hexdigest()


def check_timestamp(call, max_skew=DEFAULT_MAX_SKEW, now=None):
    text = call.query.get("timestamp", "")
    if not text:
        raise InboundError(30, "isv.missing-timestamp", "Missing timestamp")
    try:
        sent = parse_gmt8(text)
    except ValueError:
        raise InboundError(31, "isv.invalid-timestamp", f"Invalid timestamp {text!r}") from None
    now = now or datetime.now(timezone.utc)
    if abs((now - sent).total_seconds()) > max_skew:
        raise InboundError(
            31, "isv.invalid-timestamp", f"timestamp {text} is more than {max_skew}s from now"
        )


# ERP statuses by how far along they are: an order never goes back to a lesser one.
STATUS_RANK = {"1": 1, "2": 2, "4": 3, "3": 4}


def transition(status, current=None, voided=False, finished=False):
    """What an ERP ``status`` does to an order (README, transition table).

    :param current: the ERP status the order has; ``voided``/``finished``: the order is
        voided or finished (by the ERP or by the store).
    :return: ``(apply, new_status)``: whether the call's fields are applied, and the ERP
        status the order then has (``current`` when it does not change).
    """
    if status not in STATUS_RANK:  # 5 other: recorded, never a status change
        return False, current
    if voided and status != "3":  # a void is final
        return False, current
    if finished and status not in ("3", "4"):  # only a void follows a finish
        return False, current
    if STATUS_RANK.get(current, 0) > STATUS_RANK[status]:
        return True, current  # details of an earlier step, arriving late
    return True, status


def validate_params(params):
    """Validate the business fields of an inbound call; raise QimenValidationError."""
    for name in ("orderBillCode", "status"):
        if not params.get(name):
            raise QimenValidationError(name, "is required")
    check_enums_and_dates(params, INBOUND_ENUMS)
    for line in params.get("mx_list") or ():
        if not (line.get("sku") or "").strip():
            raise QimenValidationError("mx_list", "a line has no sku")
        number = line.get("goods_number") or ""
        try:
            quantity = float(number)
        except ValueError:
            quantity = math.nan
        if not math.isfinite(quantity):
            raise QimenValidationError("mx_list", f"goods_number {number!r} is not a number")


def shipped_quantities(mx_list):
    """``{sku: quantity}`` of a validated ``mx_list``, in the list's order: a SKU listed
    on several lines is shipped once, with their quantities summed."""
    quantities = {}
    for line in mx_list or ():
        sku = line["sku"].strip()
        quantities[sku] = quantities.get(sku, 0.0) + float(line["goods_number"])
    return quantities


def build_reply(success, message, fmt="json", code=None, sub_code=None):
    """Return ``(body_bytes, content_type)`` of a Qimen reply."""
    values = {
        "flag": "success" if success else "failure",
        "code": CODE_SUCCESS if success else str(code or "0"),
        "message": message or ("OK" if success else "failure"),
    }
    if sub_code and not success:
        values["sub_code"] = sub_code
    if fmt == "xml":
        root = etree.Element("response")
        for name, value in values.items():
            etree.SubElement(root, name).text = value
        body = xml_document(root)
        return body, "text/xml; charset=utf-8"
    body = json.dumps({"response": values}, ensure_ascii=False).encode("utf-8")
    return body, "application/json; charset=utf-8"


def error_reply(error, fmt="json"):
    """Reply for an :class:`InboundError`."""
    return build_reply(False, error.message, fmt, code=error.code, sub_code=error.sub_code)
