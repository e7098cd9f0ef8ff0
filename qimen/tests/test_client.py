import logging
import socket
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from conftest import APP_KEY, SECRET

from qimen import client as client_module
from qimen.client import (
    QimenClient,
    SendResult,
    connection_verdict,
    environment_settings,
    shared_session,
)
from qimen.errors import QimenValidationError
from qimen.sandbox import FAULT_KINDS
from qimen.signing import verify

VALUES = {
    "orderBillCode": "门店/0001-002",
    "status": "3",
    "customerid": "STORE_ERP_01",
    "cancle": "1",
    "canceler": "李四",
    "cancleDate": "2024-01-01 11:59:00",
    "zf_type": "1",
    "zf_message": "不想买了",
}


def client(url, secret=SECRET, **kwargs):
    return QimenClient(url, APP_KEY, secret, target_app_key="87654321", **kwargs)


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_success_through_sandbox(sandbox, sign_method, fmt):
    result = client(sandbox.url, sign_method=sign_method, fmt=fmt).salesorder_update(VALUES)
    assert result.ok, result.describe()
    assert (result.code, result.http_status) == ("1", 200)
    (received,) = sandbox.calls("accepted")
    assert received.params == VALUES
    assert received.query["sign_method"] == sign_method
    assert received.query["target_app_key"] == "87654321"
    assert received.query["sign"] == "***"


class _Capture(requests.Session):
    def __init__(self):
        super().__init__()
        self.seen = []

    def send(self, request, **kwargs):
        self.seen.append((request, kwargs))
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"response":{"flag":"success","code":"1","message":"OK"}}'
        response._content_consumed = True  # as if read: iter_content serves _content
        return response


def test_wire_format():
    session = _Capture()
    qc = client(
        "https://qimen.example/router/qm", session=session, connect_timeout=2, read_timeout=7
    )
    assert qc.salesorder_update(VALUES).ok
    ((request, kwargs),) = session.seen
    assert request.method == "POST"
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert set(query) == {
        "method",
        "app_key",
        "target_app_key",
        "timestamp",
        "format",
        "v",
        "sign_method",
        "sign",
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    body = dict(parse_qsl(request.body.decode("ascii"), encoding="utf-8"))
    assert body == VALUES
    assert "%E4%B8%8D" in request.body.decode("ascii")  # 不 as UTF-8
    signature = query.pop("sign")
    assert verify({**query, **body}, SECRET, signature, "md5")
    assert kwargs["timeout"] == (2.0, 7.0)
    assert kwargs["stream"] is True, "the body is read under the call's deadline"
    assert qc.max_call_seconds == 16.0


def test_validation_happens_before_sending(sandbox):
    with pytest.raises(QimenValidationError, match="zf_type"):
        client(sandbox.url).salesorder_update(dict(VALUES, zf_type="9"))
    assert sandbox.calls() == []


@pytest.mark.parametrize(
    ("kind", "outcome", "text"),
    [
        ("timeout", "transient", "timeout"),
        ("reset", "transient", "unreachable"),
        ("http500", "transient", "HTTP 500: unparsable reply (an HTML page, not a Qimen reply)"),
        ("garbage", "transient", "unparsable"),
        ("failure", "permanent", "code 0"),
        ("signature", "permanent", "code 25"),
        ("isv", "permanent", "isv.invalid-parameter"),
        ("isp", "transient", "isp.remote-service-error"),
    ],
)
def test_each_fault_kind(sandbox, kind, outcome, text):
    sandbox.add_fault(kind, count=1)
    qc = client(sandbox.url, read_timeout=0.3)
    started = time.monotonic()
    result = qc.salesorder_update(VALUES)
    assert result.outcome == outcome
    assert text in result.describe()
    assert time.monotonic() - started < 3
    assert sandbox.calls("fault")[0].fault == kind
    assert qc.salesorder_update(VALUES).ok  # count=1: the next call goes through
    assert set(FAULT_KINDS) >= {kind}


def test_fault_by_bill_code(sandbox):
    sandbox.add_fault("isv", bill_codes=["BAD-1"])
    qc = client(sandbox.url)
    assert qc.salesorder_update(dict(VALUES, orderBillCode="BAD-1")).permanent
    assert qc.salesorder_update(VALUES).ok
    assert qc.salesorder_update(dict(VALUES, orderBillCode="BAD-1")).permanent


def test_unreachable_gateway_is_transient():
    with socket_port() as port:
        pass  # the port is closed again: nothing listens there
    result = client(f"http://127.0.0.1:{port}/router/qm", connect_timeout=1).salesorder_update(
        VALUES
    )
    assert result.transient and result.describe().startswith("unreachable")


def test_wrong_secret_is_permanent_signature_error(sandbox):
    result = client(sandbox.url, secret="not-the-secret").salesorder_update(VALUES)
    assert result.permanent and result.code == "25"
    assert sandbox.calls("rejected")[0].code == "25"


def test_no_secret_or_signature_leaks(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    qc = client(sandbox.url, read_timeout=0.3)
    sandbox.add_fault("timeout", count=1)
    signatures = []
    original = QimenClient._post

    def spy(self, query, body):
        signatures.append(query["sign"])
        return original(self, query, body)

    QimenClient._post = spy
    try:
        results = [qc.salesorder_update(VALUES), qc.salesorder_update(VALUES)]
    finally:
        QimenClient._post = original
    assert len(signatures) == 2 and all(len(s) == 32 for s in signatures)
    texts = [caplog.text, repr(qc)] + [repr(r) for r in results]
    for text in texts:
        assert SECRET not in text
        assert not any(signature in text for signature in signatures)
    assert all(r.request["query"]["sign"] == "***" for r in results)


class _Exploding(requests.Session):
    def send(self, request, **kwargs):
        raise requests.ConnectionError(f"failed {request.url} with {SECRET}")


def test_exception_texts_are_redacted():
    result = client("https://qimen.example/router/qm", session=_Exploding()).salesorder_update(
        VALUES
    )
    assert result.transient
    assert SECRET not in result.message
    assert "sign=***" in result.message
    sign_value = result.message.split("sign=")[1][:3]
    assert sign_value == "***"


def test_session_is_reused_per_thread():
    first = shared_session()
    assert shared_session() is first
    other = []
    thread = threading.Thread(target=lambda: other.append(shared_session()))
    thread.start()
    thread.join()
    assert other[0] is not first


def test_the_environments_proxy_is_used_though_read_once(sandbox, monkeypatch):
    # the gateway's host does not resolve: only the proxy (the sandbox) can answer
    url = "http://qimen-gateway.invalid/router/qm"
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{sandbox.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    environment_settings.cache_clear()
    try:
        assert client(url).salesorder_update(VALUES).ok
        monkeypatch.setenv("NO_PROXY", "qimen-gateway.invalid")
        assert client(url).salesorder_update(VALUES).ok, "read once per process"
        environment_settings.cache_clear()
        result = client(url, connect_timeout=1).salesorder_update(VALUES)
        assert result.transient and result.describe().startswith("unreachable")
    finally:
        environment_settings.cache_clear()
    assert len(sandbox.calls("accepted")) == 2


def test_calls_start_no_thread_of_their_own(sandbox, monkeypatch):
    qc = client(sandbox.url)
    assert qc.salesorder_update(VALUES).ok  # the deadline watcher may start here
    started = []
    original = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda t: started.append(t) or original(t))
    for _ in range(5):
        assert qc.salesorder_update(VALUES).ok
    assert started == []


def test_the_deadline_watcher_cuts_only_reads_still_running_at_their_deadline():
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        watcher = client_module._DeadlineWatcher()
        late = watcher.watch(time.monotonic() + 30, pairs[0][0])
        finished = watcher.watch(time.monotonic() + 0.1, pairs[1][0])
        finished.done = True
        # earlier than what the watcher waits for: it wakes up for it
        due = watcher.watch(time.monotonic() + 0.3, pairs[2][0])
        pairs[2][0].settimeout(5)
        started = time.monotonic()
        assert pairs[2][0].recv(1) == b"", "shut down at its deadline"
        assert 0.2 < time.monotonic() - started < 3
        assert due.cut and not finished.cut and not late.cut
        pairs[1][1].send(b"x")
        assert pairs[1][0].recv(1) == b"x", "a finished read's socket is left alone"
        late.done = True
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_send_result_describe():
    assert SendResult("permanent", code="41", sub_code="isv.x", message="bad").describe() == (
        "code 41 isv.x: bad"
    )
    assert SendResult("transient", message="timeout").describe() == "timeout"
    assert SendResult("transient", http_status=503).describe() == "HTTP 503"


class socket_port:
    def __enter__(self):

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize(
    ("fault", "verdict"),
    [
        (None, "accepted"),
        ("failure", "accepted"),  # the ERP answered: the gateway verified and forwarded us
        ("isv", "accepted"),
        ("signature", "rejected"),
        ("timeout", "unreachable"),
        ("reset", "unreachable"),
        ("http500", "unreachable"),
        ("garbage", "unreachable"),
        ("isp", "unreachable"),
    ],
)
def test_connection_verdict(sandbox, fault, verdict):
    if fault:
        sandbox.add_fault(fault)
    result = client(sandbox.url, read_timeout=0.3).salesorder_update(VALUES)
    assert connection_verdict(result) == verdict


def test_connection_verdict_on_wrong_credentials(sandbox):
    assert (
        connection_verdict(client(sandbox.url, secret="bad").salesorder_update(VALUES))
        == "rejected"
    )
    unknown = QimenClient(sandbox.url, "unknown-app", SECRET)
    assert connection_verdict(unknown.salesorder_update(VALUES)) == "rejected"
    with socket_port() as port:
        pass
    closed = client(f"http://127.0.0.1:{port}/router/qm", connect_timeout=1)
    assert connection_verdict(closed.salesorder_update(VALUES)) == "unreachable"


def test_slow_reply_is_a_transient_timeout_of_an_applied_call(sandbox):
    sandbox.add_fault("slow", count=1)
    result = client(sandbox.url, read_timeout=0.3).salesorder_update(VALUES)
    assert result.transient and result.describe().startswith("timeout")
    (call,) = sandbox.calls()
    assert call.verdict == "accepted", "the ERP applied it: a resend is a duplicate"


def test_a_trickling_reply_is_cut_at_the_call_deadline(sandbox):
    sandbox.add_fault("trickle", count=1)
    qc = client(sandbox.url, connect_timeout=0.5, read_timeout=0.5)
    result = qc.salesorder_update(VALUES)  # the whole reply would take 12 s
    assert result.transient and "not complete within 1s" in result.describe()


class _Huge(requests.Session):
    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = b"{" + b" " * (300 * 1024) + b"}"
        response._content_consumed = True
        return response


def test_an_oversized_reply_is_refused():
    result = client("https://qimen.example/router/qm", session=_Huge()).salesorder_update(VALUES)
    assert result.transient
    assert "larger than" in result.describe()


@pytest.mark.parametrize("kind", ["garbage", "nul"])
def test_reply_texts_are_storable_whatever_bytes_came(sandbox, kind):
    sandbox.add_fault(kind, count=1)
    result = client(sandbox.url).salesorder_update(VALUES)
    assert not result.ok
    for text in (result.reply_text, result.describe(), result.message):
        assert "\x00" not in text
    assert "\\x00" in result.reply_text + result.describe()
