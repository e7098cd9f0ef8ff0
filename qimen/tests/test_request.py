import os
import time
from datetime import datetime

import pytest

from qimen.const import SALESORDER_UPDATE_FIELDS
from qimen.errors import QimenValidationError
from qimen.request import build_salesorder_update, system_params
from qimen.timeutil import parse_gmt8_to_utc_naive, to_gmt8

VALID = {"orderBillCode": "门店0001-001-0001", "status": "1", "customerid": "STORE_ERP_01"}


def test_all_eighteen_wire_names_in_api_order():
    values = {name: f"v{index}" for index, name in enumerate(SALESORDER_UPDATE_FIELDS)}
    values.update(status="3", confirm="2", delivery="1", zf_type="0")
    for name in ("confirmDate", "deliveryDate", "cancleDate", "finishDate"):
        values[name] = "2024-01-01 11:59:00"
    params = build_salesorder_update(values)
    assert len(params) == 18
    assert list(params) == list(SALESORDER_UPDATE_FIELDS)
    assert {"cancle", "cancleDate", "zf_type", "zf_message", "extendProps"} <= set(params)


@pytest.mark.parametrize("field", ["orderBillCode", "status", "customerid"])
def test_required(field):
    with pytest.raises(QimenValidationError, match=f"^{field}: is required") as info:
        build_salesorder_update(dict(VALID, **{field: "  "}))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "4"), ("confirm", "3"), ("delivery", "2"), ("zf_type", "2"), ("status", "确认")],
)
def test_enums(field, value):
    with pytest.raises(QimenValidationError, match=f"^{field}: must be one of"):
        build_salesorder_update(dict(VALID, **{field: value}))


@pytest.mark.parametrize("value", ["2024-01-01", "2024/01/01 12:00:00", "2024-13-01 12:00:00"])
def test_date_format(value):
    with pytest.raises(QimenValidationError, match="^cancleDate: must be a date"):
        build_salesorder_update(dict(VALID, cancleDate=value))


def test_customerid_length():
    build_salesorder_update(dict(VALID, customerid="店" * 50))
    with pytest.raises(QimenValidationError, match="^customerid: must be at most 50"):
        build_salesorder_update(dict(VALID, customerid="店" * 51))


def test_unknown_parameter_and_bad_type():
    with pytest.raises(QimenValidationError, match="^cancel: unknown parameter"):
        build_salesorder_update(dict(VALID, cancel="1"))
    with pytest.raises(QimenValidationError, match="^confirm: expected a string"):
        build_salesorder_update(dict(VALID, confirm=1.5))


def test_values_are_converted():
    params = build_salesorder_update(
        dict(
            VALID,
            status=3,
            confirmDate=datetime(2024, 1, 1, 4, 0, 0),  # naive = UTC, as Odoo stores it
            extendProps={"门店": "上海", "a": 1},
            zf_message=" 不想买了 ",
            shippingSn=False,
        )
    )
    assert params["status"] == "3"
    assert params["confirmDate"] == "2024-01-01 12:00:00"
    assert params["extendProps"] == '{"a":1,"门店":"上海"}'
    assert params["zf_message"] == "不想买了"
    assert "shippingSn" not in params


@pytest.fixture
def foreign_tz():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_system_params_timestamp_is_gmt8_whatever_the_server_tz(foreign_tz):
    params = system_params("app", target_app_key="erp", sign_method="hmac", fmt="xml")
    stamp = parse_gmt8_to_utc_naive(params["timestamp"])
    assert abs((stamp - datetime.utcnow()).total_seconds()) < 5
    assert params["method"] == "qimen.taobao.pos.salesorder.update"
    assert params["v"] == "2.0" and params["format"] == "xml" and params["sign_method"] == "hmac"
    assert params["target_app_key"] == "erp"
    assert to_gmt8(datetime(2024, 12, 31, 20, 0, 0)) == "2025-01-01 04:00:00"


def test_system_params_validation():
    with pytest.raises(QimenValidationError, match="^app_key"):
        system_params("")
    with pytest.raises(QimenValidationError, match="^sign_method"):
        system_params("a", sign_method="sha1")
    with pytest.raises(QimenValidationError, match="^format"):
        system_params("a", fmt="yaml")
    assert "target_app_key" not in system_params("a")
