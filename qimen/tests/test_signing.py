import subprocess
import sys
from pathlib import Path

import pytest

from qimen.errors import QimenValidationError
from qimen.signing import sign, string_to_sign, verify

TOP_PARAMS = {
    "app_key": "test",
    "fields": "nick",
    "format": "xml",
    "method": "taobao.user.seller.get",
    "session": "test",
    "sign_method": "md5",
    "timestamp": "2013-05-06 13:52:03",
    "v": "2.0",
}
POS_PARAMS = {
    "method": "qimen.taobao.pos.salesorder.update",
    "app_key": "12345678",
    "target_app_key": "87654321",
    "timestamp": "2024-01-01 12:00:00",
    "format": "json",
    "v": "2.0",
    "customerid": "STORE_ERP_01",
    "orderBillCode": "SO20240101001",
    "status": "1",
    "confirm": "1",
    "confirmor": "张三",
    "confirmDate": "2024-01-01 11:59:00",
}
GATEWAY_QUERY = {
    "app_key": "87654321",
    "customerid": "STORE_ERP_01",
    "format": "json",
    "method": "qimen.taobao.pos.salesorder.update",
    "request_id": "abc123xyz",
    "sign_method": "md5",
    "source_appkey": "12345678",
    "target_appkey": "87654321",
    "timestamp": "2024-01-01 12:00:00",
    "v": "2.0",
}
GATEWAY_BODY = (
    '{"confirm":"1","confirmDate":"2024-01-01 11:59:00","confirmor":"张三",'
    '"orderBillCode":"SO20240101001","status":"1"}'
)


def test_top_vector():
    assert sign(TOP_PARAMS, "test") == "72CB4D809B375A54502C09360D879C64"


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("md5", "4584A220AC7F9F036D6EFDFC8814A143"),
        ("hmac", "F672AF9F3F9135A19A04785B159E0ED4"),
        ("hmac-sha256", "C8351B25FDDAA67D3B7EB78EAD700D3EB529039B8920AC79E309115DD18E45A9"),
    ],
)
def test_pos_vectors(method, expected):
    assert sign(dict(POS_PARAMS, sign_method=method), "helloworld", method) == expected


@pytest.mark.parametrize("body", [GATEWAY_BODY, GATEWAY_BODY.encode("utf-8")])
def test_gateway_body_vector(body):
    assert sign(GATEWAY_QUERY, "providersecret", "md5", body) == "72BDC161FB27F4D3B20CDCAE79433E17"


def test_sign_and_blank_values_are_skipped():
    base = sign(POS_PARAMS, "helloworld")
    assert sign(dict(POS_PARAMS, sign="WHATEVER"), "helloworld") == base
    assert (
        sign(dict(POS_PARAMS, extendProps="", shippingSn="   ", zf_type=None), "helloworld") == base
    )
    assert sign(dict(POS_PARAMS, zf_type="0"), "helloworld") != base


def test_string_to_sign_is_sorted_utf8():
    assert string_to_sign({"b": "2", "a": "张"}, body="{}") == "a张b2{}".encode()


def test_unknown_sign_method():
    with pytest.raises(QimenValidationError, match="sign_method"):
        sign(POS_PARAMS, "x", "sha1")


def test_verify_accepts_lower_case_and_rejects_others():
    good = sign(POS_PARAMS, "helloworld", "hmac")
    assert verify(POS_PARAMS, "helloworld", good.lower(), "hmac")
    assert verify(POS_PARAMS, "helloworld", good, "hmac")
    assert not verify(POS_PARAMS, "helloworld", good, "md5")
    assert not verify(POS_PARAMS, "other", good, "hmac")
    assert not verify(POS_PARAMS, "helloworld", "", "hmac")
    assert not verify(POS_PARAMS, "helloworld", "非十六进制", "hmac")
    assert not verify(POS_PARAMS, "helloworld", good, "sha1")
    assert not verify(dict(POS_PARAMS, status="3"), "helloworld", good, "hmac")


def test_protocol_package_never_imports_odoo():
    code = (
        "import sys, qimen, qimen.sandbox, qimen.inbound, qimen.client;"
        "bad = [m for m in sys.modules if m == 'odoo' or m.startswith('odoo.')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
