"""Mappings between Odoo events and Qimen parameters (see README, status mapping)."""

import re

from .qimen.const import (
    GATEWAY_URL_PRODUCTION,
    GATEWAY_URL_TEST,
    STATUS_CONFIRM,
    STATUS_PICKUP,
    STATUS_VOID,
)

# Odoo event -> Qimen ``status`` of qimen.taobao.pos.salesorder.update. Completion has no
# status of its own in the outbound API: it is a confirmation with confirm=2 (completed).
EVENT_STATUS = {
    "confirm": STATUS_CONFIRM,
    "pickup": STATUS_PICKUP,
    "void": STATUS_VOID,
    "complete": STATUS_CONFIRM,
}

# Selections shared by several models (keys are the wire values).
ERP_STATUS_SELECTION = [
    ("1", "Confirmed"),
    ("2", "Picked up"),
    ("3", "Voided"),
    ("4", "Finished"),
    ("5", "Other"),
]
VOID_TYPE_SELECTION = [("0", "Customer return"), ("1", "Other reason")]
JOB_STATE_SELECTION = [
    ("pending", "Pending"),
    ("sending", "Sending"),
    ("failed", "Failed, will retry"),
    ("done", "Acknowledged"),
    ("dead", "Dead"),
    ("superseded", "Superseded"),
    ("cancelled", "Cancelled"),
]
# Order events in the order they happen, as the back office lists them.
# The till's order number in a POS reference: session-login-sequence, zero-padded. The
# words before it ("Order", "订单") are translated by the till: not part of a bill code.
POS_ORDER_NUMBER = re.compile(r"\d{5,}-\d{3,}-\d{4,}$")
BILL_CODE_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,16}")
ORDER_EVENTS = ("confirm", "pickup", "void", "complete")
# A job's event: one of the order's own events, or a resend of the order's current state
# (for an ERP that lost what it received), whose status is that state's.
RESEND_EVENT = "resend"
JOB_EVENT_SELECTION = [
    ("confirm", "Paid"),
    ("pickup", "Picked up"),
    ("void", "Voided"),
    ("complete", "Completed"),
    (RESEND_EVENT, "Sent again"),
]

# Order fields -> wire names they are sent as.
ORDER_WIRE_FIELDS = {
    "qimen_confirm": "confirm",
    "qimen_confirmor": "confirmor",
    "qimen_confirm_date": "confirmDate",
    "qimen_delivery": "delivery",
    "qimen_delivery_date": "deliveryDate",
    "qimen_canceler": "canceler",
    "qimen_cancel_date": "cancleDate",
    "qimen_finish_date": "finishDate",
    "qimen_shipping_code": "shippingCode",
    "qimen_shipping_sn": "shippingSn",
    "qimen_void_type": "zf_type",
    "qimen_void_reason": "zf_message",
}

# The fields of pos.order that the Point of Sale loads when its company syncs: the state
# to show (computed, never sent back) and the return reason that the cashier sets.
POS_ORDER_FIELDS = ["qimen_sync_state", "qimen_return_type", "qimen_return_reason"]

# An order's later updates wait while an earlier one is in one of these states: a dead
# update holds them until it is retried (after a fix) or cancelled by an operator.
BLOCKING_JOB_STATES = ("pending", "sending", "failed", "dead")

FINISHED_JOB_STATES = ("done", "superseded", "cancelled")

RETRY_BASE_SECONDS = (
    60  # doubled on each attempt (system parameter pos_qimen_sync.retry_base_seconds)
)
RETRY_MAX_SECONDS = 6 * 3600
# A claim's lease: the longest a call can take (client.max_call_seconds) plus this margin
# for recording its outcome; a job still sending after its lease lost its sender.
LEASE_MARGIN_SECONDS = 10
# A cron run takes no job whose call could end after this share of limit_time_real,
# counted from the start of the cron thread's pass; and takes jobs for at most this long.
RUN_SHARE_OF_TIME_LIMIT = 0.75
MAX_CONNECT_TIMEOUT = 10  # so that a call (connect + 2 x read) fits a cron run
MAX_READ_TIMEOUT = 30
MAX_CLAIM_SECONDS = 60
GC_BATCH = 5000
GC_SECONDS = 60

GATEWAY_PRESETS = {"production": GATEWAY_URL_PRODUCTION, "test": GATEWAY_URL_TEST}

# Whose a failed call's fault was (qimen/health.py; "configuration": settings that cannot
# send, found when a job is claimed).
FAILURE_KINDS = [
    ("unreachable", "Gateway unreachable"),
    ("gateway", "Gateway error"),
    ("credentials", "Credentials refused"),
    ("configuration", "Settings incomplete"),
    ("order", "The order's own"),
]

# The circuit breaker (qimen.sync.health): sending pauses for a company once this many
# different orders in a row failed for the company's reason (no success between them).
BREAKER_TRIP_ORDERS = {"credentials": 2, "configuration": 1, "unreachable": 4, "gateway": 4}
# While paused, one probe call at growing intervals (doubled up to the maximum).
PROBE_FIRST_SECONDS = 30
PROBE_MAX_SECONDS = 600
# Updates that die of their own errors: one summary to-do per company per this period.
DEAD_SUMMARY_SECONDS = 3600
