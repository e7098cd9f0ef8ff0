"""Building and validating ``qimen.taobao.pos.salesorder.update`` requests."""

import json

from .const import (
    API_SALESORDER_UPDATE,
    API_VERSION,
    CUSTOMERID_MAX_LENGTH,
    DATE_FIELDS,
    FORMATS,
    OUTBOUND_ENUMS,
    REQUIRED_FIELDS,
    SALESORDER_UPDATE_FIELDS,
    SIGN_METHODS,
)
from .errors import QimenValidationError
from .timeutil import now_gmt8, parse_gmt8, to_gmt8


def _as_text(name, value):
    if value is None or value is False:
        return None
    if name == "extendProps" and isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if name in DATE_FIELDS and not isinstance(value, str):
        return to_gmt8(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise QimenValidationError(name, f"expected a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def check_enums_and_dates(params, enums):
    """Raise :class:`QimenValidationError` for a value outside its enumeration or a date
    not in ``yyyy-MM-dd HH:mm:ss``; empty values are not checked."""
    for name, allowed in enums.items():
        value = params.get(name)
        if value not in (None, "") and value not in allowed:
            raise QimenValidationError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    for name in DATE_FIELDS:
        value = params.get(name)
        if value:
            try:
                parse_gmt8(value)
            except ValueError:
                raise QimenValidationError(
                    name, f"must be a date 'yyyy-MM-dd HH:mm:ss', got {value!r}"
                ) from None


def validate_business_params(params, fields=SALESORDER_UPDATE_FIELDS, enums=OUTBOUND_ENUMS):
    """Raise :class:`QimenValidationError` naming the first invalid field."""
    for name in params:
        if name not in fields:
            raise QimenValidationError(name, "unknown parameter")
    for name in REQUIRED_FIELDS:
        if not params.get(name):
            raise QimenValidationError(name, "is required")
    check_enums_and_dates(params, enums)
    if len(params["customerid"]) > CUSTOMERID_MAX_LENGTH:
        raise QimenValidationError(
            "customerid", f"must be at most {CUSTOMERID_MAX_LENGTH} characters"
        )


def build_salesorder_update(values):
    """Return the wire parameters of a salesorder.update, validated.

    ``values`` maps wire names to strings (datetimes are formatted in GMT+8, a dict
    ``extendProps`` becomes JSON); empty values are dropped, as the gateway drops them.
    """
    params = {}
    for name, value in values.items():
        text = _as_text(name, value)
        if text is not None:
            params[name] = text
    validate_business_params(params)
    return {name: params[name] for name in SALESORDER_UPDATE_FIELDS if name in params}


def system_params(
    app_key,
    method=API_SALESORDER_UPDATE,
    target_app_key=None,
    sign_method="md5",
    fmt="json",
    timestamp=None,
):
    """System parameters of a call (without ``sign``); timestamp in GMT+8."""
    if not app_key:
        raise QimenValidationError("app_key", "is required")
    if sign_method not in SIGN_METHODS:
        raise QimenValidationError("sign_method", f"must be one of {', '.join(SIGN_METHODS)}")
    if fmt not in FORMATS:
        raise QimenValidationError("format", f"must be one of {', '.join(FORMATS)}")
    params = {
        "method": method,
        "app_key": app_key,
        "timestamp": to_gmt8(timestamp) if timestamp else now_gmt8(),
        "format": fmt,
        "v": API_VERSION,
        "sign_method": sign_method,
    }
    if target_app_key:
        params["target_app_key"] = target_app_key
    return params
