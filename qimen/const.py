"""Protocol constants: API names, enumerations, gateway URLs and error codes."""

from datetime import timedelta, timezone

API_SALESORDER_UPDATE = "qimen.taobao.pos.salesorder.update"
"""store POS -> gateway -> ERP: tell the ERP an order's status changed."""
API_UPDATE_SALESORDER = "qimen.taobao.pos.update.salesorder"
"""ERP -> gateway -> store POS: the ERP tells the store about an order."""
INBOUND_METHODS = (API_UPDATE_SALESORDER, API_SALESORDER_UPDATE)

GATEWAY_URL_PRODUCTION = "https://qimen.api.taobao.com/router/qm"
GATEWAY_URL_TEST = "https://qimen.api.taobao.com/router/qmtest"

TZ_GMT8 = timezone(timedelta(hours=8), "GMT+8")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
API_VERSION = "2.0"

SIGN_METHODS = ("md5", "hmac", "hmac-sha256")
FORMATS = ("json", "xml")

# Business parameters of qimen.taobao.pos.salesorder.update, wire names, in API order.
SALESORDER_UPDATE_FIELDS = (
    "orderBillCode",
    "status",
    "customerid",
    "confirm",
    "confirmor",
    "confirmDate",
    "delivery",
    "deliveryDate",
    "cancle",
    "canceler",
    "cancleDate",
    "finish",
    "finishDate",
    "shippingCode",
    "shippingSn",
    "zf_type",
    "zf_message",
    "extendProps",
)
REQUIRED_FIELDS = ("orderBillCode", "status", "customerid")
DATE_FIELDS = ("confirmDate", "deliveryDate", "cancleDate", "finishDate")
# The inbound API carries the same fields plus these two.
UPDATE_SALESORDER_EXTRA_FIELDS = ("fhck_code", "mx_list")

STATUS_CONFIRM = "1"
STATUS_PICKUP = "2"
STATUS_VOID = "3"

OUTBOUND_ENUMS = {
    "status": ("1", "2", "3"),
    "confirm": ("0", "1", "2"),
    "delivery": ("0", "1"),
    "zf_type": ("0", "1"),
}
INBOUND_ENUMS = dict(OUTBOUND_ENUMS, status=("1", "2", "3", "4", "5"))
CUSTOMERID_MAX_LENGTH = 50

# Platform error codes (section 8 of the protocol notes).
CODE_SUCCESS = "1"
TRANSIENT_PLATFORM_CODES = frozenset({"7", "10", "15"})
PERMANENT_PLATFORM_CODES = frozenset(
    {"21", "22", "24", "25", "27", "28", "29", "30", "31", "40", "41"}
)
PLATFORM_CODE_MESSAGES = {
    "7": "Call frequency limit",
    "10": "Service unavailable",
    "15": "Remote service error",
    "21": "Missing method",
    "22": "Invalid method",
    "24": "Missing signature",
    "25": "Invalid signature",
    "27": "Invalid session",
    "28": "Missing app key",
    "29": "Invalid app key",
    "30": "Missing timestamp",
    "31": "Invalid timestamp",
    "40": "Missing required arguments",
    "41": "Invalid arguments",
    "50": "Remote service error",
}

# Parameters whose values are secret and never logged, stored or shown.
SECRET_PARAMS = frozenset({"sign", "secret", "app_secret", "session"})
