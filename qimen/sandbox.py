# pylint: disable=print-used
"""A local sandbox of the Qimen gateway and the ERP behind it, on a loopback port.

It verifies each call's signature, timestamp and parameters like the gateway does,
records what it received, answers success, and injects faults on demand. It can also
play the ERP and send signed ``qimen.taobao.pos.update.salesorder`` calls to a store.

    python3 -m qimen.sandbox serve --port 8070 --app-key demo-app --secret demo-secret
    python3 -m qimen.sandbox push --url http://127.0.0.1:8069/qimen/callback \\
        --secret demo-callback-secret --bill-code "Shop/0001" --status 3 \\
        --field zf_type=0 --field zf_message=不想买了
"""

import argparse
import json
import logging
import random
import socket
import struct
import sys
import threading
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode, urlsplit

import requests
from lxml import etree

from .client import mask_signatures, redact_params
from .const import API_SALESORDER_UPDATE, API_UPDATE_SALESORDER
from .errors import QimenValidationError
from .inbound import (
    InboundError,
    build_reply,
    check_signature,
    check_timestamp,
    parse_call,
    query_dict,
)
from .request import validate_business_params
from .responses import parse_reply
from .signing import sign
from .timeutil import now_gmt8
from .xmlsafe import xml_document

_logger = logging.getLogger(__name__)

FAULT_KINDS = {
    "timeout": "answer only after a delay longer than the client's read timeout",
    "slow": "apply the call (accepted), but answer only after that delay: the caller times "
    "out and sends it again",
    "trickle": "answer success one byte at a time, slower than any read deadline",
    "nul": "answer a failure whose message holds a NUL byte",
    "reset": "reset the TCP connection without answering",
    "http500": "answer HTTP 500 with an HTML page",
    "garbage": "answer HTTP 200 with a body that is neither JSON nor XML",
    "failure": "answer a business failure (flag failure, code 0)",
    "signature": "answer gateway error 25 Invalid signature",
    "isv": "answer error_response 41 with sub_code isv.invalid-parameter",
    "isp": "answer error_response 15 with sub_code isp.remote-service-error",
}
SANDBOX_PATH = "/router/qm"


@dataclass
class Fault:
    """A fault to inject: for the given bill codes, else at ``rate`` (0..1);
    ``count`` limits how many times it fires (None: forever)."""

    kind: str
    rate: float = 1.0
    bill_codes: list = field(default_factory=list)
    count: int | None = None

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")

    @classmethod
    def parse(cls, text):
        """``kind[:rate][@BILL1,BILL2][#count]``, e.g. ``timeout:0.2`` or ``isv@SO1``."""
        count = None
        if "#" in text:
            text, count = text.split("#", 1)
            count = int(count)
        bills = []
        if "@" in text:
            text, bills = text.split("@", 1)
            bills = [b for b in bills.split(",") if b]
        rate = 1.0
        if ":" in text:
            text, rate = text.split(":", 1)
        return cls(text, float(rate), bills, count)


@dataclass
class Received:
    """One call the sandbox received (signature masked)."""

    method: str
    query: dict
    params: dict
    verdict: str
    code: str
    message: str
    fault: str = ""
    at: str = ""


class SandboxGateway:
    """Qimen gateway + ERP on ``127.0.0.1``; use as a context manager in tests."""

    def __init__(
        self,
        apps=None,
        host="127.0.0.1",
        port=0,
        max_skew=600,
        timeout_delay=30.0,
        seed=None,
        quiet=True,
        latency=0.0,
    ):
        self.apps = dict(apps or {"sandbox-app": "sandbox-secret"})
        self.host = host
        self.port = port
        self.max_skew = max_skew
        self.timeout_delay = timeout_delay
        self.latency = latency
        self.quiet = quiet
        self.faults = []
        self.received = []
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not crypto
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # -- life cycle ---------------------------------------------------------------
    @property
    def url(self):
        return f"http://{self.host}:{self.port}{SANDBOX_PATH}"

    def start(self):
        handler = type("Handler", (_Handler,), {"sandbox": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- faults and records --------------------------------------------------------
    def add_fault(self, kind, rate=1.0, bill_codes=None, count=None):
        fault = (
            kind if isinstance(kind, Fault) else Fault(kind, rate, list(bill_codes or []), count)
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def set_secret(self, app_key, secret):
        """The app's secret from now on (the ERP side rotated it)."""
        with self._lock:
            self.apps[app_key] = secret

    def clear(self, faults_only=False):
        """Forget the faults, and the calls received unless ``faults_only``."""
        with self._lock:
            self.faults.clear()
            if not faults_only:
                self.received.clear()

    def calls(self, verdict=None):
        """Received calls, optionally only those with ``verdict`` (accepted, rejected,
        fault)."""
        with self._lock:
            return [r for r in self.received if verdict is None or r.verdict == verdict]

    def _pick_fault(self, bill_code):
        with self._lock:
            for fault in self.faults:
                if fault.count is not None and fault.count <= 0:
                    continue
                if fault.bill_codes:
                    hit = bill_code in fault.bill_codes
                else:
                    hit = self._random.random() < fault.rate
                if hit:
                    if fault.count is not None:
                        fault.count -= 1
                    return fault.kind
        return None

    def _record(self, received):
        with self._lock:
            self.received.append(received)
        if not self.quiet:
            mark = {"accepted": "OK ", "rejected": "ERR", "fault": "!! "}[received.verdict]
            bill = received.params.get("orderBillCode", "-")
            status = received.params.get("status", "-")
            extra = f" fault={received.fault}" if received.fault else ""
            _say(
                f"{mark} {received.at} {received.method or '?'} bill={bill} "
                f"status={status} -> {received.code} {received.message}{extra}"
            )

    # -- the gateway ---------------------------------------------------------------
    def handle(self, query_string, body, content_type):
        """Return (status, body, content_type, fault) for a gateway call."""
        at = now_gmt8()
        fmt = "json"
        try:
            call = parse_call(query_string, body, content_type)
            fmt = call.query.get("format", "json")
            self._check(call)
        except InboundError as exc:
            query = redact_params(query_dict(query_string or ""))
            self._record(
                Received(
                    query.get("method", ""), query, {}, "rejected", exc.code, exc.message, at=at
                )
            )
            reply, ctype = build_reply(False, exc.message, fmt, exc.code, exc.sub_code)
            return 200, reply, ctype, None
        bill_code = call.params.get("orderBillCode", "")
        fault = self._pick_fault(bill_code)
        received = Received(
            call.method, redact_params(call.query), call.params, "accepted", "1", "OK", at=at
        )
        if fault and fault not in ("slow", "trickle"):  # those reply late to an applied call
            received.verdict, received.fault = "fault", fault
            received.code, received.message = _FAULT_REPLIES.get(fault, ("", fault))[:2]
        elif fault:
            received.fault = fault
        self._record(received)
        if fault and fault not in ("slow", "trickle"):
            return (*_fault_response(fault, fmt), fault)
        reply, ctype = build_reply(True, "OK", fmt)
        return 200, reply, ctype, fault

    def _check(self, call):
        if not call.query.get("method"):
            raise InboundError(21, "isv.missing-method", "Missing method")
        if call.method != API_SALESORDER_UPDATE:
            raise InboundError(22, "isv.invalid-method", f"Invalid method {call.method}")
        if not call.app_key:
            raise InboundError(28, "isv.missing-app-key", "Missing app key")
        secret = self.apps.get(call.app_key)
        if secret is None:
            raise InboundError(29, "isv.appkey-not-exists", f"Invalid app key {call.app_key}")
        check_signature(call, secret)
        check_timestamp(call, self.max_skew)
        params = {k: v for k, v in call.params.items() if v != ""}
        try:
            validate_business_params(params)
        except QimenValidationError as exc:
            code = 40 if "required" in str(exc) else 41
            raise InboundError(code, "isv.invalid-parameter:" + exc.field, str(exc)) from None


_FAULT_REPLIES = {
    "failure": ("0", "ERP refused the update"),
    "signature": ("25", "Invalid signature"),
    "isv": ("41", "Invalid arguments", "isv.invalid-parameter"),
    "isp": ("15", "Remote service error", "isp.remote-service-error"),
    "http500": ("500", "HTTP 500"),
    "garbage": ("", "garbage body"),
    "timeout": ("", "no answer in time"),
    "reset": ("", "connection reset"),
    "trickle": ("", "reply trickling in"),
    "nul": ("0", "ERP\x00refused"),
}


def _fault_response(kind, fmt):
    if kind == "http500":
        return 500, b"<html><body>502 Bad Gateway</body></html>", "text/html"
    if kind == "garbage":
        return 200, b"\x00\xffnot a qimen reply", "text/plain"
    if kind == "nul":  # valid JSON whose message decodes to a NUL character
        return (
            200,
            b'{"response":{"flag":"failure","code":"0","message":"ERP\\u0000refused"}}',
            ("application/json"),
        )
    code, message, *sub = _FAULT_REPLIES[kind]
    if sub:
        data = {
            "error_response": {
                "code": code,
                "msg": message,
                "sub_code": sub[0],
                "sub_msg": "sandbox fault",
            }
        }
        if fmt == "xml":
            root = etree.Element("error_response")
            for name, value in data["error_response"].items():
                etree.SubElement(root, name).text = value
            return 200, xml_document(root), "text/xml"
        return 200, json.dumps(data).encode(), "application/json"
    body, ctype = build_reply(False, message, fmt, code)
    return 200, body, ctype


class _Handler(BaseHTTPRequestHandler):
    sandbox = None
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds
    # the body until the client's delayed ACK (40 ms) on a kept-alive connection
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        _logger.debug("sandbox: %s", mask_signatures(format % args))

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for index in range(len(body)):
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
                if self.sandbox._stopping.wait(0.2):
                    return None
        except OSError:  # the client gave up
            self.close_connection = True
        return None

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/_sandbox/requests":
            data = [asdict(r) for r in self.sandbox.calls()]
            return self._send(
                200, json.dumps(data, ensure_ascii=False).encode(), "application/json"
            )
        text = (
            f"Qimen sandbox gateway: POST calls to {self.sandbox.url}\n"
            f"app keys: {', '.join(self.sandbox.apps)}\n"
            f"received: {len(self.sandbox.calls())} calls; GET /_sandbox/requests lists them\n"
        )
        return self._send(200, text.encode(), "text/plain; charset=utf-8")

    def do_DELETE(self):
        faults_only = urlsplit(self.path).path == "/_sandbox/faults"
        self.sandbox.clear(faults_only=faults_only)
        self._send(200, b'{"cleared": true}', "application/json")

    def do_POST(self):
        split = urlsplit(self.path)
        body = self._body()
        if split.path == "/_sandbox/faults":
            try:
                spec = json.loads(body or b"{}")
                fault = self.sandbox.add_fault(
                    spec["kind"], spec.get("rate", 1.0), spec.get("bill_codes"), spec.get("count")
                )
            except (ValueError, KeyError, TypeError) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, json.dumps(asdict(fault)).encode(), "application/json")
        if split.path == "/_sandbox/apps":  # the ERP side rotates an app's secret
            try:
                spec = json.loads(body or b"{}")
                self.sandbox.set_secret(str(spec["app_key"]), str(spec["secret"]))
            except (ValueError, KeyError, TypeError) as exc:
                return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return self._send(200, b'{"rotated": true}', "application/json")
        if not split.path.startswith("/router/"):
            return self._send(404, b"not found", "text/plain")
        status, reply, ctype, fault = self.sandbox.handle(
            split.query, body, self.headers.get("Content-Type", "")
        )
        if self.sandbox.latency:
            self.sandbox._stopping.wait(self.sandbox.latency)
        if fault in ("timeout", "slow"):
            self.sandbox._stopping.wait(self.sandbox.timeout_delay)
        if fault == "trickle":
            return self._trickle(status, reply, ctype)
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return None
        try:
            return self._send(status, reply, ctype)
        except OSError:  # the client gave up waiting
            return None


# -- the ERP side: signed calls to a store ---------------------------------------------
def build_push(
    params,
    secret,
    app_key,
    customerid="",
    source_app_key="sandbox-erp",
    fmt="json",
    sign_method="md5",
    method=API_UPDATE_SALESORDER,
    timestamp=None,
    body_kind=None,
):
    """Return (query, body, content_type) of a gateway -> store call, signed like the
    gateway signs (sorted query + raw body)."""
    body_kind = body_kind or fmt
    query = {
        "method": method,
        "app_key": app_key,
        "target_appkey": app_key,
        "source_appkey": source_app_key,
        "customerid": customerid,
        "format": fmt,
        "sign_method": sign_method,
        "request_id": uuid.uuid4().hex[:16],
        "timestamp": timestamp or now_gmt8(),
        "v": "2.0",
    }
    query = {k: v for k, v in query.items() if v}
    if body_kind == "form":
        body = urlencode(params, encoding="utf-8").encode("ascii")
        query["sign"] = sign({**query, **params}, secret, sign_method)
        return query, body, "application/x-www-form-urlencoded; charset=utf-8"
    if body_kind == "xml":
        root = etree.Element("request")
        for name, value in params.items():
            if name == "mx_list" and isinstance(value, list):
                holder = etree.SubElement(root, "mx_list")
                for line in value:
                    item = etree.SubElement(holder, "mx")
                    for key, val in line.items():
                        etree.SubElement(item, key).text = str(val)
            else:
                etree.SubElement(root, name).text = str(value)
        body = xml_document(root)
        ctype = "text/xml; charset=utf-8"
    else:
        body = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        ctype = "application/json; charset=utf-8"
    query["sign"] = sign(query, secret, sign_method, body)
    return query, body, ctype


def push(url, params, secret, app_key, timeout=10, **kwargs):
    """Send a signed ERP -> store call; return (http_status, Reply)."""
    query, body, ctype = build_push(params, secret, app_key, **kwargs)
    response = requests.post(
        url, params=query, data=body, headers={"Content-Type": ctype}, timeout=timeout
    )
    return response.status_code, parse_reply(response.content, response.status_code)


# -- command line -------------------------------------------------------------------------
def _say(text):
    """One write per message: lines of the server's threads never interleave."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _fields(pairs):
    values = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--field wants name=value, got {pair!r}")
        values[name] = json.loads(value) if name == "mx_list" else value
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m qimen.sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="play the Qimen gateway + ERP on a loopback port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8070)
    serve.add_argument("--app-key", default="sandbox-app")
    serve.add_argument("--secret", default="sandbox-secret")
    serve.add_argument("--max-skew", type=int, default=600, help="seconds (default 600)")
    serve.add_argument(
        "--timeout-delay",
        type=float,
        default=30.0,
        help="seconds a 'timeout' fault waits before answering",
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="kind[:rate][@BILL,...][#count], kinds: " + ", ".join(FAULT_KINDS),
    )
    serve.add_argument("--seed", type=int)
    serve.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every answer (default 0)"
    )
    serve.add_argument("--quiet", action="store_true", help="do not print each call")
    pushp = sub.add_parser("push", help="send a signed qimen.taobao.pos.update.salesorder")
    pushp.add_argument("--url", required=True, help="the store's callback URL")
    pushp.add_argument("--secret", required=True, help="the store's callback secret")
    pushp.add_argument("--app-key", default="sandbox-app", help="the store's app key")
    pushp.add_argument("--customerid", default="")
    pushp.add_argument("--bill-code", required=True)
    pushp.add_argument("--status", required=True, choices=["1", "2", "3", "4", "5"])
    pushp.add_argument(
        "--field",
        action="append",
        metavar="NAME=VALUE",
        help="another business field, e.g. zf_message=不想买了",
    )
    pushp.add_argument("--format", default="json", choices=["json", "xml", "form"])
    pushp.add_argument("--sign-method", default="md5", choices=["md5", "hmac", "hmac-sha256"])
    show = sub.add_parser("requests", help="list what a running sandbox received")
    show.add_argument("--url", default="http://127.0.0.1:8070")
    args = parser.parse_args(argv)

    if args.command == "serve":
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print("warning: the sandbox is meant for loopback only", file=sys.stderr)
        sandbox = SandboxGateway(
            {args.app_key: args.secret},
            args.host,
            args.port,
            args.max_skew,
            args.timeout_delay,
            args.seed,
            quiet=args.quiet,
            latency=args.latency,
        )
        for spec in args.fault:
            sandbox.add_fault(Fault.parse(spec))
        sandbox.start()
        _say(
            f"Qimen sandbox gateway on {sandbox.url}\n"
            f"  app key {args.app_key!r}, secret {args.secret!r} (sandbox values)\n"
            f"  faults: {', '.join(args.fault) or 'none'}; Ctrl+C to stop"
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            sandbox.stop()
        return 0
    if args.command == "push":
        params = {"orderBillCode": args.bill_code, "status": args.status, **_fields(args.field)}
        fmt = "json" if args.format == "form" else args.format
        status, reply = push(
            args.url,
            params,
            args.secret,
            args.app_key,
            customerid=args.customerid,
            fmt=fmt,
            sign_method=args.sign_method,
            body_kind=args.format,
        )
        print(f"HTTP {status}: flag={reply.flag} code={reply.code} {reply.message}")
        return 0 if reply.ok else 1
    response = requests.get(args.url.rstrip("/") + "/_sandbox/requests", timeout=10)
    print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
