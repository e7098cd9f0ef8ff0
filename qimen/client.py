"""HTTP client of the Qimen gateway: one choke point, :meth:`QimenClient._post`.

System parameters go in the query string, business parameters form-encoded UTF-8 in
the body, the signature covers both. Every failure becomes a :class:`SendResult`;
secrets and signatures never appear in its text, logs or exceptions, and its texts are
storable whatever bytes the gateway sent (no NUL).

A call lasts at most :attr:`QimenClient.max_call_seconds`: the connect timeout, then the
read timeout for the reply to start, then the rest of the read timeout for the body
(a reply trickling in byte by byte is cut off), capped at :data:`MAX_REPLY_BYTES`.
"""

import functools
import heapq
import http.client
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests

from . import transport
from .const import API_SALESORDER_UPDATE, SECRET_PARAMS
from .request import build_salesorder_update, system_params
from .responses import PERMANENT, SUCCESS, TRANSIENT, decode_reply, parse_reply
from .signing import sign
from .text import storable

_logger = logging.getLogger(__name__)
_local = threading.local()
_SIGN_IN_URL = re.compile(r"(sign=)[0-9A-Fa-f]+")
MAX_REPLY_CHARS = 4000
MAX_REPLY_BYTES = 256 * 1024
READ_CHUNK = 16384
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0


def shared_session():
    """A ``requests.Session`` reused per thread (keep-alive to the gateway). It does not
    read the environment on every call (proxies, CA bundle, ``.netrc``: a tenth of a
    call's own work): :func:`environment_settings` reads it once per gateway."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = False
    return session


@functools.lru_cache(maxsize=32)
def environment_settings(url):
    """The proxies and CA bundle the environment sets for ``url`` (``HTTPS_PROXY``,
    ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), as requests reads them, read once per
    process: a server's environment does not change while it runs."""
    settings = requests.Session().merge_environment_settings(url, {}, None, True, None)
    return {"proxies": settings["proxies"], "verify": settings["verify"]}


def mask_signatures(text):
    """Mask ``sign=<hex>`` in a text (a URL in a log line or an exception)."""
    return _SIGN_IN_URL.sub(r"\1***", text)


class MaskSignatures(logging.Filter):
    """Mask signatures in the log records of a logger that prints request URLs (our
    signature travels in the query string)."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = mask_signatures(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


# urllib3 logs every request URL at DEBUG level
logging.getLogger("urllib3.connectionpool").addFilter(MaskSignatures())


def redact(text, secrets):
    """Replace every secret value in ``text`` by ``***``."""
    text = str(text)
    for secret in secrets:
        if secret and len(str(secret)) >= 4:
            text = text.replace(str(secret), "***")
    return text


def redact_params(params):
    """Copy of ``params`` with secret values masked."""
    return {k: ("***" if k in SECRET_PARAMS else v) for k, v in params.items()}


@dataclass
class SendResult:
    """What became of one call: ``outcome`` success / transient / permanent."""

    outcome: str
    code: str = ""
    sub_code: str = ""
    message: str = ""
    http_status: int = 0
    request: dict = field(default_factory=dict)
    reply_text: str = ""
    elapsed: float = 0.0

    @property
    def ok(self):
        return self.outcome == SUCCESS

    @property
    def transient(self):
        return self.outcome == TRANSIENT

    @property
    def permanent(self):
        return self.outcome == PERMANENT

    def describe(self):
        parts = [p for p in (self.code and f"code {self.code}", self.sub_code) if p]
        head = " ".join(parts)
        if self.http_status and self.http_status != 200:
            head = f"HTTP {self.http_status} {head}".strip()
        return f"{head}: {self.message}" if head and self.message else (head or self.message)


class QimenClient:
    """Signed calls to the Qimen gateway."""

    def __init__(
        self,
        url,
        app_key,
        secret,
        target_app_key=None,
        sign_method="md5",
        fmt="json",
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        read_timeout=DEFAULT_READ_TIMEOUT,
        session=None,
    ):
        self.url = url
        self.app_key = app_key
        self._secret = secret
        self.target_app_key = target_app_key
        self.sign_method = sign_method
        self.fmt = fmt
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.session = session

    def __repr__(self):
        return f"<QimenClient {self.url} app_key={self.app_key}>"

    @property
    def max_call_seconds(self):
        """The longest one call can take: connect, then the reply's first bytes within the
        read timeout, then the rest of the body within the read timeout again (the last
        read may block up to the read timeout before the deadline is seen)."""
        connect, read = self.timeout
        return connect + 2 * read

    def prepare(self, method, business_params, timestamp=None):
        """Return ``(query, body)`` for a call; ``query`` carries ``sign``."""
        query = system_params(
            self.app_key,
            method=method,
            target_app_key=self.target_app_key,
            sign_method=self.sign_method,
            fmt=self.fmt,
            timestamp=timestamp,
        )
        body = {k: v for k, v in business_params.items() if v not in (None, "")}
        query["sign"] = sign({**query, **body}, self._secret, self.sign_method)
        return query, body

    def salesorder_update(self, values, timestamp=None):
        """Validate and send a ``qimen.taobao.pos.salesorder.update``."""
        return self.call(API_SALESORDER_UPDATE, build_salesorder_update(values), timestamp)

    def call(self, method, business_params, timestamp=None):
        query, body = self.prepare(method, business_params, timestamp)
        recorded = {"query": redact_params(query), "body": dict(body)}
        started = time.monotonic()
        try:
            http_status, content = self._post(query, body)
        except requests.Timeout as exc:
            result = SendResult(TRANSIENT, message=self._clean(f"timeout: {exc}"))
        except requests.ConnectionError as exc:
            result = SendResult(TRANSIENT, message=self._clean(f"unreachable: {exc}"))
        except Exception as exc:  # noqa: BLE001 - anything else, redacted like the rest
            result = SendResult(TRANSIENT, message=self._clean(f"request failed: {exc}"))
        else:
            reply = parse_reply(content, http_status)
            result = SendResult(
                reply.outcome,
                code=self._clean(reply.code),
                sub_code=self._clean(reply.sub_code),
                message=self._clean("; ".join(m for m in (reply.message, reply.sub_message) if m)),
                http_status=http_status,
                reply_text=self._clean(decode_reply(content)[:MAX_REPLY_CHARS]),
            )
        result.request = recorded
        result.elapsed = time.monotonic() - started
        _logger.info(
            "Qimen %s %s -> %s %s (%.2fs)",
            method,
            body.get("orderBillCode", ""),
            result.outcome,
            result.describe(),
            result.elapsed,
        )
        return result

    def _post(self, query, body):
        """The only place that talks to the network: return ``(http_status, content)``.
        Straight on the wire (:mod:`.transport`), unless the environment sets a proxy
        for the gateway or the caller handed a session: then through requests."""
        data = urlencode(body, encoding="utf-8").encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        deadline = time.monotonic() + sum(self.timeout)
        settings = environment_settings(self.url) if self.session is None else {}
        if self.session is None and not requests.utils.select_proxy(self.url, settings["proxies"]):
            url = f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(query)}"
            response, connection = transport.post(
                url, data, headers["Content-Type"], self.timeout, settings["verify"]
            )
            try:
                content = _read_body(response, deadline, sum(self.timeout), response.read)
            except BaseException:
                # a body not read to its end: the connection cannot serve again
                transport.forget(connection)
                raise
            response.close()  # its reader; the connection stays open for the next call
            if response.will_close:
                transport.forget(connection)
            return response.status, content
        response = (self.session or shared_session()).post(
            self.url,
            params=query,
            data=data,
            headers=headers,
            timeout=self.timeout,
            stream=True,
            **settings,
        )
        with response:
            chunks = response.iter_content(READ_CHUNK)
            content = _read_body(
                response.raw, deadline, sum(self.timeout), lambda _size: next(chunks, b"")
            )
            return response.status_code, content

    def _clean(self, text):
        """Remove the secret and any signature from a text (URLs in exceptions), and what
        a database cannot store (NUL)."""
        return storable(mask_signatures(redact(text, [self._secret])))


def _read_body(raw, deadline, budget, read):
    """Read a reply's body with ``read(size)`` (b"" at its end) before ``deadline``
    (monotonic) and within MAX_REPLY_BYTES.

    Each socket read has the read timeout, so a reply trickling in byte by byte would never
    time out: the deadline watcher shuts the socket down at the deadline, which ends the
    blocked read."""
    sock = _socket_of(raw)
    watch = _DEADLINES.watch(deadline, sock) if sock is not None else None
    chunks, size = [], 0
    try:
        while chunk := read(READ_CHUNK):
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise ValueError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            chunks.append(chunk)
    except (requests.RequestException, OSError, http.client.HTTPException):
        if not (watch and watch.cut):
            raise
    finally:
        if watch is not None:
            watch.done = True
    if watch and watch.cut:
        raise requests.Timeout(f"reply not complete within {budget:g}s")
    return b"".join(chunks)


def _socket_of(raw):
    """The socket a reply is read from: http.client's (its file's raw socket IO), or
    urllib3's (its connection's)."""
    sock = getattr(getattr(getattr(raw, "fp", None), "raw", None), "_sock", None)
    if sock is None:
        sock = getattr(getattr(raw, "connection", None), "sock", None)
    return sock


class _Watch:
    """A socket to shut down at its deadline unless its read is ``done`` by then."""

    __slots__ = ("cut", "deadline", "done", "sock")

    def __init__(self, deadline, sock):
        self.deadline, self.sock, self.done, self.cut = deadline, sock, False, False

    def __lt__(self, other):
        return self.deadline < other.deadline


class _DeadlineWatcher:
    """One thread that cuts the reads still running at their deadline, for every call of
    the process: a timer thread per call would start a thread per call, the costliest
    part of a call's own work when lanes send side by side. A finished read is only marked
    done (no wake-up); the thread drops it when it comes to the top of the heap."""

    def __init__(self):
        self._heap = []
        self._wake = threading.Condition()
        self._thread = None

    def watch(self, deadline, sock):
        watch = _Watch(deadline, sock)
        with self._wake:
            heapq.heappush(self._heap, watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="qimen-call-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is watch:  # earlier than what the thread waits for
                self._wake.notify()
        return watch

    def _run(self):
        with self._wake:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = self._heap[0].deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                _cut(heapq.heappop(self._heap))


_DEADLINES = _DeadlineWatcher()


def _cut(watch):
    if watch.done:
        return
    watch.cut = True
    try:
        watch.sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:  # already closed
        _logger.debug("Qimen call: socket already closed at its deadline: %s", exc)


# Platform codes that mean the gateway refused who we are (not what we sent).
_CREDENTIAL_CODES = frozenset({"24", "25", "26", "27", "28", "29", "30", "31"})
UNREACHABLE = "unreachable"
REJECTED = "rejected"
ACCEPTED = "accepted"


def connection_verdict(result):
    """Tell apart, for a test call: the gateway cannot be reached (or answers garbage),
    it refuses the credentials or signature, or it accepted the call (even when the ERP
    then answered a business failure, since the gateway verified us to forward it)."""
    sub_code = (result.sub_code or "").lower()
    if result.code in _CREDENTIAL_CODES or any(
        word in sub_code for word in ("signature", "appkey", "app-key", "session", "timestamp")
    ):
        return REJECTED
    if result.ok or (result.permanent and result.code):
        return ACCEPTED
    return UNREACHABLE
