import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from test_signing import GATEWAY_BODY, GATEWAY_QUERY
from test_xmlsafe import BILLION_LAUGHS, XXE_FILE

from qimen.errors import QimenValidationError
from qimen.inbound import (
    MAX_BODY_BYTES,
    InboundError,
    build_reply,
    call_key,
    check_signature,
    check_timestamp,
    error_reply,
    normalize_method,
    parse_call,
    read_body,
    shipped_quantities,
    transition,
    validate_params,
)
from qimen.sandbox import build_push
from qimen.signing import sign
from qimen.timeutil import to_gmt8

SECRET = "回调-secret-1234"
PARAMS = {"orderBillCode": "SO20240101001", "status": "3", "zf_type": "0", "zf_message": "不想买了"}


def signed(body_kind="json", sign_method="md5", params=PARAMS, **kwargs):
    query, body, ctype = build_push(
        params,
        SECRET,
        "87654321",
        customerid="STORE_ERP_01",
        sign_method=sign_method,
        body_kind=body_kind,
        fmt="xml" if body_kind == "xml" else "json",
        **kwargs,
    )
    return query, body, ctype


def test_gateway_vector_verifies():
    query = dict(GATEWAY_QUERY, sign="72bdc161fb27f4d3b20cdcae79433e17")
    call = parse_call(query, GATEWAY_BODY.encode("utf-8"), "application/json")
    check_signature(call, "providersecret")
    assert call.params["confirmor"] == "张三"
    assert call.target_app_key == "87654321" and call.customerid == "STORE_ERP_01"
    with pytest.raises(InboundError) as info:
        check_signature(call, "another-secret")
    assert (info.value.code, info.value.sub_code, info.value.http_status) == (
        "25",
        "isv.invalid-signature",
        401,
    )


@pytest.mark.parametrize("body_kind", ["json", "xml", "form"])
@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_each_body_and_sign_method(body_kind, sign_method):
    query, body, ctype = signed(body_kind, sign_method)
    call = parse_call(query, body, ctype)
    check_signature(call, SECRET)
    assert call.params == PARAMS
    assert call.body_kind == body_kind
    assert call.method == "qimen.taobao.pos.update.salesorder"
    assert call.fmt == ("xml" if body_kind == "xml" else "json")


def test_query_as_string_and_variants():
    query, body, _ctype = signed(method="pos.update.salesorder")
    query["target_app_key"] = query.pop("target_appkey")
    del query["customerid"]
    body_data = dict(json.loads(body), customerid="IN_BODY")
    call = parse_call("&".join(f"{k}={v}" for k, v in query.items()), json.dumps(body_data), "")
    assert call.method == "qimen.taobao.pos.update.salesorder"
    assert call.target_app_key == "87654321"
    assert call.customerid == "IN_BODY"


def test_normalize_method():
    assert (
        normalize_method("qimen.taobao.pos.update.salesorder")
        == "qimen.taobao.pos.update.salesorder"
    )
    assert normalize_method("taobao.pos.update.salesorder") == "qimen.taobao.pos.update.salesorder"
    assert normalize_method("taobao.pos.salesorder.update") == "qimen.taobao.pos.salesorder.update"
    assert normalize_method("salesorder") == "salesorder"
    assert normalize_method("") == ""


def test_mx_list_json_and_xml():
    lines = [{"sku": "SKU-红", "goods_number": "2"}, {"sku": "B", "goods_number": "1"}]
    params = dict(PARAMS, mx_list=lines, fhck_code="WH01")
    for kind in ("json", "xml"):
        query, body, ctype = signed(kind, params=params)
        call = parse_call(query, body, ctype)
        check_signature(call, SECRET)
        assert call.params["mx_list"] == lines
        assert call.params["fhck_code"] == "WH01"
    one = parse_call(
        {},
        b"<request><mx_list><mx><sku>A</sku><goods_number>1</goods_number></mx></mx_list></request>",
    )
    assert one.params["mx_list"] == [{"sku": "A", "goods_number": "1"}]
    for bad in (b'{"mx_list": "not json"}', b'{"mx_list": [1]}', b'{"mx_list": 3}'):
        with pytest.raises(InboundError, match="mx_list") as info:
            parse_call({}, bad)
        assert info.value.sub_code == "isv.invalid-parameter:mx_list"


def test_deeply_nested_bodies_are_refused():
    for body in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(InboundError) as info:
            parse_call({}, body, "application/json")
        assert info.value.code == "41"


def test_a_signed_form_cannot_be_replayed_with_a_fresh_query():
    """All in the form (as the .NET SDK sends it), captured, and replayed with a new
    timestamp in the query: the name given twice is refused before anything else."""
    old = "2020-01-01 12:00:00"
    form = {
        "method": "qimen.taobao.pos.update.salesorder",
        "app_key": "87654321",
        "timestamp": old,
        "sign_method": "md5",
        **PARAMS,
    }
    form["sign"] = sign(form, SECRET)
    raw = urlencode(form).encode()
    call = parse_call({}, raw, "application/x-www-form-urlencoded")
    check_signature(call, SECRET)  # the original verifies...
    with pytest.raises(InboundError, match="more than 600s"):
        check_timestamp(call, 600)  # ...but is stale
    with pytest.raises(InboundError, match="given both in the query and the body") as info:
        parse_call(
            {"timestamp": to_gmt8(datetime.now(timezone.utc))},
            raw,
            "application/x-www-form-urlencoded",
        )
    assert info.value.code == "41"


def test_form_encodings_and_format():
    spaced = dict(PARAMS, zf_message="不想 买了")
    query, body, ctype = signed("form", params=spaced)
    # another encoder's choices: %20 for a space, lower-case hex
    percent20 = re.sub(rb"%[0-9A-F]{2}", lambda m: m.group().lower(), body).replace(b"+", b"%20")
    assert percent20 != body
    call = parse_call(dict(query, format="xml"), percent20, ctype)
    assert call.params["zf_message"] == "不想 买了"
    assert call.fmt == "xml"
    with pytest.raises(InboundError, match="Invalid signature"):
        check_signature(call, SECRET)  # format=xml was added after signing
    call = parse_call(query, percent20, ctype)
    check_signature(call, SECRET)


@pytest.mark.parametrize(
    ("body", "ctype", "text"),
    [
        (b'{"orderBillCode": ', "application/json", "malformed JSON"),
        (b"[1,2]", "application/json", "not an object"),
        (b"\xff\xfe{", "application/json", "not UTF-8"),
        (b"<request><a></request>", "text/xml", "malformed XML"),
        (XXE_FILE, "text/xml", "DTD or entity"),
        (BILLION_LAUGHS, "text/xml", "DTD or entity"),
        (b"<request>text only</request>", "text/xml", "no fields"),
        (b"a=%zz&&", "application/x-www-form-urlencoded", "neither JSON"),
    ],
)
def test_unreadable_bodies(body, ctype, text):
    with pytest.raises(InboundError, match=text) as info:
        parse_call({"method": "x"}, body, ctype)
    assert info.value.code == "41" and info.value.sub_code == "isv.invalid-parameter"


def test_oversized_body():
    with pytest.raises(InboundError, match="larger than") as info:
        parse_call({}, b"{" + b" " * 300_000 + b"}")
    assert info.value.http_status == 413


def test_missing_signature_and_bad_method():
    query, body, ctype = signed()
    call = parse_call({k: v for k, v in query.items() if k != "sign"}, body, ctype)
    with pytest.raises(InboundError, match="Missing signature"):
        check_signature(call, SECRET)
    call = parse_call(dict(query, sign_method="sha1"), body, ctype)
    with pytest.raises(InboundError, match="unsupported sign_method") as info:
        check_signature(call, SECRET)
    assert (info.value.code, info.value.http_status) == ("25", 401)  # as the README pairs them
    tampered = parse_call(query, body.replace(b"SO2024", b"SO2025"), ctype)
    with pytest.raises(InboundError, match="Invalid signature"):
        check_signature(tampered, SECRET)


def test_timestamp_window():
    now = datetime.now(timezone.utc)
    for delta, ok in ((0, True), (-590, True), (590, True), (-700, False), (700, False)):
        query, body, ctype = signed(timestamp=to_gmt8(now + timedelta(seconds=delta)))
        call = parse_call(query, body, ctype)
        if ok:
            check_timestamp(call, 600, now)
        else:
            with pytest.raises(InboundError, match="more than 600s") as info:
                check_timestamp(call, 600, now)
            assert info.value.code == "31"
    with pytest.raises(InboundError, match="Missing timestamp"):
        check_timestamp(parse_call({}, b""), 600)
    with pytest.raises(InboundError, match="Invalid timestamp"):
        check_timestamp(parse_call({"timestamp": "yesterday"}, b""), 600)


def test_validate_params():
    validate_params(dict(PARAMS, status="4"))
    validate_params(dict(PARAMS, status="5", cancleDate="2024-01-01 10:00:00"))
    for bad, field in (
        ({"status": "6"}, "status"),
        ({"zf_type": "2"}, "zf_type"),
        ({"delivery": "x"}, "delivery"),
        ({"finishDate": "2024-01-01"}, "finishDate"),
        ({"orderBillCode": ""}, "orderBillCode"),
        ({"mx_list": [{"sku": " ", "goods_number": "1"}]}, "mx_list"),
        ({"mx_list": [{"sku": "A"}]}, "mx_list"),
        ({"mx_list": [{"sku": "A", "goods_number": "two"}]}, "mx_list"),
        ({"mx_list": [{"sku": "A", "goods_number": "nan"}]}, "mx_list"),
    ):
        with pytest.raises(QimenValidationError) as info:
            validate_params(dict(PARAMS, **bad))
        assert info.value.field == field


def test_shipped_quantities_sum_a_sku_listed_twice():
    lines = [
        {"sku": "B ", "goods_number": "1"},
        {"sku": "A", "goods_number": "2.5"},
        {"sku": "B", "goods_number": "3"},
    ]
    validate_params(dict(PARAMS, mx_list=lines))
    assert list(shipped_quantities(lines).items()) == [("B", 4.0), ("A", 2.5)]
    assert shipped_quantities(None) == {}


def test_replies():
    body, ctype = build_reply(True, "OK", "xml")
    assert body == (
        b'<?xml version="1.0" encoding="utf-8"?><response><flag>success</flag><code>1</code>'
        b"<message>OK</message></response>"
    )
    assert ctype.startswith("text/xml")
    body, ctype = build_reply(True, "OK", "json")
    assert json.loads(body) == {"response": {"flag": "success", "code": "1", "message": "OK"}}
    assert ctype.startswith("application/json")
    body, _ = error_reply(InboundError(41, "isv.invalid-parameter", "status: 非法"), "json")
    assert json.loads(body) == {
        "response": {
            "flag": "failure",
            "code": "41",
            "message": "status: 非法",
            "sub_code": "isv.invalid-parameter",
        }
    }
    body, _ = build_reply(False, "单据不存在", "xml")
    assert "<flag>failure</flag><code>0</code><message>单据不存在</message>" in body.decode()


# -- input PostgreSQL cannot store, or that is not UTF-8 --------------------------------
def _refused(query, body, ctype="application/json"):
    with pytest.raises(InboundError) as info:
        parse_call(query, body, ctype)
    assert (info.value.code, info.value.http_status) == ("41", 400)
    assert info.value.sub_code.startswith("isv.invalid-parameter")
    return info.value


@pytest.mark.parametrize("name", ["customerid", "app_key", "method", "sign"])
def test_a_nul_in_the_query_is_refused(name):
    query, body, ctype = signed()
    error = _refused(urlencode(dict(query, **{name: "A\x00B"})), body, ctype)
    assert "NUL" in error.message
    _refused(urlencode({"app\x00key": "x"}), body, ctype)  # in a name too


def test_a_nul_in_the_body_is_refused_even_signed():
    query, body, ctype = signed(params=dict(PARAMS, orderBillCode="SO\x00"))
    assert b"\\u0000" in body  # JSON escapes it: the signature is valid
    error = _refused(query, body, ctype)
    assert error.sub_code == "isv.invalid-parameter:orderBillCode"
    _refused({}, b'{"status": "1"}\x00', "application/json")  # a raw NUL byte
    _refused({}, b"status=1&zf_message=%00", "application/x-www-form-urlencoded")
    _refused({}, b'{"mx_list": [{"sku": "\\u0000", "goods_number": "1"}]}')
    _refused({}, b'{"zf_message": "\\ud800"}')  # a lone surrogate cannot be encoded


def test_bodies_and_queries_that_are_not_utf8_are_refused():
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><request><status>1</status></request>'
    error = _refused({}, utf16.encode("utf-16"), "text/xml")
    assert "NUL" in error.message or "UTF-8" in error.message
    assert "UTF-8" in _refused({}, "<request><s>é</s></request>".encode("latin-1")).message
    assert "UTF-8" in _refused(b"customerid=%FF%FE", b"").message
    assert "UTF-8" in _refused(b"customerid=\xff", b"").message


# -- reading a body with a hard cap -------------------------------------------------------
class EndlessStream:
    """A chunked body that never ends; counts what was read."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, size=-1):
        assert size > 0, "an unbounded read would buffer the whole body"
        self.read_bytes += size
        return b"x" * size


def test_read_body_never_reads_past_the_cap():
    stream = EndlessStream()
    with pytest.raises(InboundError, match="larger than") as info:
        read_body(stream)
    assert (info.value.code, info.value.http_status) == ("41", 413)
    assert stream.read_bytes == MAX_BODY_BYTES + 1
    stream = EndlessStream()
    with pytest.raises(InboundError):
        read_body(stream, content_length=MAX_BODY_BYTES + 1)
    assert stream.read_bytes == 0, "a declared oversized body is refused unread"


def test_read_body_reads_a_body_up_to_the_cap():
    import io

    assert read_body(io.BytesIO(b"x" * MAX_BODY_BYTES)) == b"x" * MAX_BODY_BYTES
    assert read_body(io.BytesIO(b"")) == b""
    assert read_body(io.BytesIO(b"abc"), max_bytes=3, content_length=3) == b"abc"


# -- what identifies a call ------------------------------------------------------------
def _key(query, body, ctype):
    return call_key(parse_call(query, body, ctype))


def test_call_key_is_the_request_id_when_there_is_one():
    query, body, ctype = signed()
    other_query, other_body, _ = signed(params=dict(PARAMS, zf_message="另一个"))
    assert _key(query, body, ctype) == _key(
        dict(other_query, request_id=query["request_id"]), other_body, ctype
    )
    assert _key(query, body, ctype) != _key(other_query, other_body, ctype)


@pytest.mark.parametrize("body_kind", ["json", "xml", "form"])
def test_call_key_without_request_id_is_the_signed_content(body_kind):
    def key(params, **kwargs):
        query, body, ctype = signed(body_kind, params=params, **kwargs)
        del query["request_id"]
        return _key(dict(query, sign="whatever"), body, ctype)

    now = datetime.now(timezone.utc)
    stamp = to_gmt8(now)
    same = key(PARAMS, timestamp=stamp)
    assert same == key(PARAMS, timestamp=stamp), "a replay is the same call"
    assert same != key(dict(PARAMS, zf_message="新的原因"), timestamp=stamp), "new content"
    assert same != key(PARAMS, timestamp=to_gmt8(now + timedelta(seconds=1))), "sent again"


# -- the transition table (README) -----------------------------------------------------
@pytest.mark.parametrize(
    ("status", "current", "voided", "finished", "expected"),
    [
        ("1", None, False, False, (True, "1")),
        ("2", "1", False, False, (True, "2")),
        ("1", "2", False, False, (True, "2")),  # late confirmation details: status kept
        ("2", "2", False, False, (True, "2")),  # new content (tracking number)
        ("4", "2", False, False, (True, "4")),
        ("3", "2", False, False, (True, "3")),
        ("3", None, True, False, (True, "3")),  # voided by the store: details from the ERP
        ("2", "3", True, False, (False, "3")),  # a void is not undone
        ("1", "3", True, False, (False, "3")),
        ("4", "3", True, False, (False, "3")),
        ("3", "3", True, False, (True, "3")),  # corrected void reason
        ("2", "4", False, True, (False, "4")),  # a finish is not undone
        ("1", None, False, True, (False, None)),  # finished by the store
        ("4", "4", False, True, (True, "4")),
        ("3", "4", False, True, (True, "3")),  # a return after completion
        ("5", "2", False, False, (False, "2")),  # other: recorded only
        ("5", "3", True, False, (False, "3")),
    ],
)
def test_transition(status, current, voided, finished, expected):
    assert transition(status, current, voided, finished) == expected
