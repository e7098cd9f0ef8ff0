import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
import requests
from conftest import APP_KEY, SECRET

from qimen.client import QimenClient
from qimen.inbound import InboundError, build_reply, check_signature, error_reply, parse_call
from qimen.sandbox import Fault, SandboxGateway, main, push

VALUES = {"orderBillCode": "SO-沙箱-1", "status": "1", "customerid": "STORE_ERP_01", "confirm": "1"}


def client(url, **kwargs):
    return QimenClient(url, APP_KEY, SECRET, **kwargs)


@pytest.mark.parametrize(
    ("change", "params", "code", "text"),
    [
        ({"app_key": "unknown"}, VALUES, "29", "Invalid app key"),
        ({}, dict(VALUES, status="9"), "41", "status: must be one of"),
        ({}, dict(VALUES, confirmDate="2024-01-01"), "41", "confirmDate"),
        (
            {},
            {k: v for k, v in VALUES.items() if k != "customerid"},
            "40",
            "customerid: is required",
        ),
        ({"method": "qimen.taobao.other"}, VALUES, "22", "Invalid method"),
        ({"stale": True}, VALUES, "31", "timestamp"),
    ],
)
def test_gateway_rejections(sandbox, change, params, code, text):
    qc = client(sandbox.url)
    if change.get("app_key"):
        qc.app_key = change["app_key"]
    method = change.get("method", "qimen.taobao.pos.salesorder.update")
    stamp = datetime.now(timezone.utc) - timedelta(hours=1) if change.get("stale") else None
    result = qc.call(method, params, timestamp=stamp)
    assert result.permanent and result.code == code, result.describe()
    assert text in result.message
    (received,) = sandbox.calls()
    assert received.verdict == "rejected" and received.code == code
    assert received.query["sign"] == "***"


def test_control_endpoints(sandbox):
    base = sandbox.url.rsplit("/router", 1)[0]
    assert "POST calls to" in requests.get(base + "/", timeout=5).text
    reply = requests.post(
        base + "/_sandbox/faults", json={"kind": "isp", "bill_codes": ["X"]}, timeout=5
    )
    assert reply.json()["kind"] == "isp"
    assert (
        requests.post(base + "/_sandbox/faults", json={"kind": "nope"}, timeout=5).status_code
        == 400
    )
    assert client(sandbox.url).salesorder_update(dict(VALUES, orderBillCode="X")).transient
    assert client(sandbox.url).salesorder_update(VALUES).ok
    listed = requests.get(base + "/_sandbox/requests", timeout=5).json()
    assert [r["verdict"] for r in listed] == ["fault", "accepted"]
    assert listed[1]["params"]["orderBillCode"] == "SO-沙箱-1"
    requests.delete(base + "/_sandbox/requests", timeout=5)
    assert sandbox.calls() == [] and sandbox.faults == []
    assert requests.post(base + "/elsewhere", timeout=5).status_code == 404


def test_the_erp_side_rotates_a_secret(sandbox):
    base = sandbox.url.rsplit("/router", 1)[0]
    rotated = requests.post(
        base + "/_sandbox/apps", json={"app_key": APP_KEY, "secret": "新密钥"}, timeout=5
    )
    assert rotated.json() == {"rotated": True}
    refused = client(sandbox.url).salesorder_update(VALUES)
    assert (refused.permanent, refused.code) == (True, "25"), refused.describe()
    assert QimenClient(sandbox.url, APP_KEY, "新密钥").salesorder_update(VALUES).ok
    assert requests.post(base + "/_sandbox/apps", json={}, timeout=5).status_code == 400


def test_fault_rate_is_seeded_and_mixed():
    with SandboxGateway({APP_KEY: SECRET}, seed=7) as sandbox:
        sandbox.add_fault("failure", rate=0.5)
        outcomes = [client(sandbox.url).salesorder_update(VALUES).outcome for _ in range(30)]
    assert 5 < outcomes.count("permanent") < 25
    assert "success" in outcomes


def test_fault_parse():
    assert Fault.parse("timeout") == Fault("timeout", 1.0, [], None)
    assert Fault.parse("isv:0.25@SO1,SO2#3") == Fault("isv", 0.25, ["SO1", "SO2"], 3)
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("explode")
    with pytest.raises(ValueError, match="between 0 and 1"):
        Fault.parse("reset:2")


class _Store:
    """A minimal receiving endpoint built from qimen.inbound, as the Odoo controller is."""

    def __init__(self, secret):
        store = self
        self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                query = self.path.partition("?")[2]
                try:
                    call = parse_call(query, body, self.headers.get("Content-Type"))
                    check_signature(call, secret)
                    store.calls.append(call)
                    reply, ctype = build_reply(True, "OK", call.fmt)
                except InboundError as exc:
                    reply, ctype = error_reply(exc)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/qimen/callback"
        Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store():
    store = _Store("store-secret")
    yield store
    store.close()


@pytest.mark.parametrize("body_kind", ["json", "xml", "form"])
@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_push_to_a_store(store, body_kind, sign_method):
    params = {"orderBillCode": "SO1", "status": "3", "zf_type": "0", "zf_message": "不想买了"}
    status, reply = push(
        store.url,
        params,
        "store-secret",
        "store-app",
        customerid="C1",
        sign_method=sign_method,
        body_kind=body_kind,
        fmt="xml" if body_kind == "xml" else "json",
    )
    assert status == 200 and reply.ok, reply
    (call,) = store.calls
    assert call.params == params
    assert (
        call.query["target_appkey"] == "store-app" and call.query["source_appkey"] == "sandbox-erp"
    )
    status, reply = push(store.url, params, "wrong-secret", "store-app")
    assert not reply.ok and reply.code == "25"


def test_cli_push_and_requests(store, sandbox, capsys):
    code = main(
        [
            "push",
            "--url",
            store.url,
            "--secret",
            "store-secret",
            "--bill-code",
            "SO9",
            "--status",
            "2",
            "--field",
            "shippingCode=SF",
            "--field",
            'mx_list=[{"sku": "A", "goods_number": "1"}]',
            "--format",
            "xml",
        ]
    )
    assert code == 0
    assert "flag=success code=1" in capsys.readouterr().out
    assert store.calls[0].params["mx_list"] == [{"sku": "A", "goods_number": "1"}]
    assert (
        main(["push", "--url", store.url, "--secret", "bad", "--bill-code", "SO9", "--status", "2"])
        == 1
    )
    client(sandbox.url).salesorder_update(VALUES)
    base = sandbox.url.rsplit("/router", 1)[0]
    assert main(["requests", "--url", base]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert printed[0]["params"]["orderBillCode"] == "SO-沙箱-1"


def test_serve_command(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qimen.sandbox",
            "serve",
            "--port",
            "0",
            "--app-key",
            APP_KEY,
            "--secret",
            SECRET,
            "--fault",
            "isv@BAD",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("Qimen sandbox gateway on http://127.0.0.1:")
        url = first.split(" on ", 1)[1].strip()
        assert client(url).salesorder_update(VALUES).ok
        assert client(url).salesorder_update(dict(VALUES, orderBillCode="BAD")).permanent
        proc.stdout.readline()
        proc.stdout.readline()
        assert proc.stdout.readline().startswith("OK ")
        assert "fault=isv" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(5)
