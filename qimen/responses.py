"""Parsing every reply shape of the gateway and classifying it for retries."""

import json
from dataclasses import dataclass, field

from .const import (
    CODE_SUCCESS,
    PERMANENT_PLATFORM_CODES,
    PLATFORM_CODE_MESSAGES,
    TRANSIENT_PLATFORM_CODES,
)
from .errors import QimenXMLError
from .xmlsafe import element_to_data, parse_xml

SUCCESS = "success"
TRANSIENT = "transient"
PERMANENT = "permanent"


@dataclass
class Reply:
    """A parsed reply; ``outcome`` is success, transient or permanent."""

    outcome: str
    code: str = ""
    message: str = ""
    sub_code: str = ""
    sub_message: str = ""
    flag: str = ""
    request_id: str = ""
    http_status: int = 0
    data: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.outcome == SUCCESS


def _text(value):
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def decode_reply(body):
    """A reply's text: UTF-8, else GB18030 (some ERPs), undecodable bytes replaced."""
    if isinstance(body, bytes):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body.decode("gb18030", errors="replace")
    return body or ""


def _load(text):
    """Return (root_name, dict) for a JSON or XML body, or raise ValueError."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        data = json.loads(stripped)
        if not isinstance(data, dict):
            raise ValueError("JSON reply is not an object")
        if len(data) == 1:
            ((name, inner),) = data.items()
            if isinstance(inner, dict):
                return name, inner
        return "", data
    if stripped.startswith("<"):
        try:
            root = parse_xml(stripped.encode("utf-8"))
        except QimenXMLError as exc:
            raise ValueError(str(exc)) from None
        if str(root.tag).lower() == "html":
            raise ValueError("an HTML page, not a Qimen reply")
        data = element_to_data(root)
        if not isinstance(data, dict):
            raise ValueError("XML reply has no fields")
        return root.tag, data
    raise ValueError("reply is neither JSON nor XML")


def classify(flag, code, sub_code):
    """Retry classification of the protocol notes, section 8."""
    flag = (flag or "").lower()
    code = (code or "").strip()
    sub_code = (sub_code or "").strip().lower()
    if flag == "success" and code in ("", CODE_SUCCESS) and not sub_code:
        return SUCCESS
    if not flag and code == CODE_SUCCESS and not sub_code:
        return SUCCESS
    if sub_code.startswith("isv."):
        return PERMANENT
    if sub_code.startswith("isp."):
        return TRANSIENT
    if code in TRANSIENT_PLATFORM_CODES:
        return TRANSIENT
    if code in PERMANENT_PLATFORM_CODES:
        return PERMANENT
    return PERMANENT


def parse_reply(body, http_status=200):
    """Parse a gateway reply of any shape and classify it."""
    text = decode_reply(body)
    try:
        root, data = _load(text)
    except (ValueError, json.JSONDecodeError) as exc:
        # unparsable: transient, whatever the HTTP status (protocol notes, section 8)
        return Reply(
            outcome=TRANSIENT, message=f"unparsable reply ({exc})", http_status=http_status
        )
    flag = _text(data.get("flag"))
    code = _text(data.get("code"))
    message = _text(data.get("message") or data.get("msg"))
    sub_code = _text(data.get("sub_code"))
    sub_message = _text(data.get("sub_message") or data.get("sub_msg"))
    if root == "error_response" and not flag:
        flag = "failure"
    if not message and code in PLATFORM_CODE_MESSAGES and flag != "success":
        message = PLATFORM_CODE_MESSAGES[code]
    outcome = classify(flag, code, sub_code)
    if not flag and not code:  # not a Qimen reply: as good as unparsable
        outcome = TRANSIENT
        message = message or "reply has neither flag nor code"
    if http_status >= 500 or http_status in (408, 429):
        if outcome != PERMANENT or not sub_code.lower().startswith("isv."):
            outcome = TRANSIENT
    elif http_status >= 400 and outcome == SUCCESS:
        outcome = PERMANENT
    return Reply(
        outcome=outcome,
        code=code,
        message=message,
        sub_code=sub_code,
        sub_message=sub_message,
        flag=flag,
        request_id=_text(data.get("request_id")),
        http_status=http_status,
        data=data,
    )
