"""The client's own wire (qimen/transport.py), against a scripted HTTP server that
records each connection and each request as it came."""

import shutil
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import APP_KEY, SECRET

from qimen import transport
from qimen.client import QimenClient, environment_settings
from qimen.signing import verify

VALUES = {"orderBillCode": "门店/0001", "status": "1", "customerid": "S1", "confirm": "1"}
OK = b'{"response":{"flag":"success","code":"1","message":"OK"}}'


class ScriptedServer:
    """Answers each request with ``reply(number)`` (bytes of a whole response; number
    counts requests across connections), then keeps the connection unless ``close_after``
    says so."""

    def __init__(self, reply=None, close_after=lambda number: False, tls=None, delay=None):
        self.reply = reply or (lambda number: _response(OK))
        self.delay = delay or (lambda number: 0)
        self.tls = tls  # a server-side SSLContext: HTTPS
        self.close_after = close_after
        self.connections, self.requests, self.closed = 0, [], threading.Semaphore(0)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://localhost:{self.port}/router/qm"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _address = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._requests_of(conn)
        except OSError:  # the client closed its kept connection
            pass

    def _requests_of(self, conn):
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                while len(buffer) < int(headers["Content-Length"]):
                    buffer += conn.recv(65536)
                length = int(headers["Content-Length"])
                body, buffer = buffer[:length], buffer[length:]
                self.requests.append((lines[0], headers, body))
                number = len(self.requests)
                time.sleep(self.delay(number))
                conn.sendall(self.reply(number))
                if self.close_after(number):
                    conn.close()
                    self.closed.release()
                    return

    def close(self):
        self.listener.close()


def _response(body, *headers):
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + body


@pytest.fixture
def fresh_connections():
    """Each test starts without this thread's kept connections, and leaves none."""
    for key in list(transport._sockets()):
        transport.forget(key)
    yield
    for key in list(transport._sockets()):
        transport.forget(key)


def client(url, read_timeout=5):
    return QimenClient(url, APP_KEY, SECRET, target_app_key="87654321", read_timeout=read_timeout)


def test_the_request_is_one_send_signed_and_framed(fresh_connections, monkeypatch):
    server = ScriptedServer()
    sends = []
    original = socket.socket.sendall

    def sendall(sock, data):
        if data.startswith(b"POST "):  # the client's (the server's replies go by too)
            sends.append(data)
        return original(sock, data)

    monkeypatch.setattr(socket.socket, "sendall", sendall)
    try:
        assert client(server.url).salesorder_update(VALUES).ok
    finally:
        server.close()
    assert len(sends) == 1, "the head and the body leave together"
    ((line, headers, body),) = server.requests
    method, target, version = line.split(" ")
    assert (method, version, urlsplit(target).path) == ("POST", "HTTP/1.1", "/router/qm")
    assert headers["Host"] == f"localhost:{server.port}"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    query = dict(parse_qsl(urlsplit(target).query))
    params = dict(parse_qsl(body.decode("ascii"), encoding="utf-8"))
    assert params == VALUES
    signature = query.pop("sign")
    assert verify({**query, **params}, SECRET, signature, "md5")


def test_a_thread_keeps_one_connection_for_its_calls(fresh_connections):
    server = ScriptedServer()
    try:
        for _ in range(3):
            assert client(server.url).salesorder_update(VALUES).ok
        other = threading.Thread(target=lambda: client(server.url).salesorder_update(VALUES))
        other.start()
        other.join()
    finally:
        server.close()
    assert len(server.requests) == 4
    assert server.connections == 2, "one for this thread's three calls, one for the other's"


def test_a_connection_the_gateway_closed_is_replaced_before_sending(fresh_connections):
    server = ScriptedServer(close_after=lambda number: True)  # as an idle timeout would
    results = []
    try:
        for _ in range(3):
            results.append(client(server.url).salesorder_update(VALUES))
            assert server.closed.acquire(timeout=5)  # closed while the connection idles
    finally:
        server.close()
    assert all(result.ok for result in results), [r.describe() for r in results]
    assert server.connections == 3 and len(server.requests) == 3, "each sent once"


def test_each_client_waits_its_own_read_timeout_on_a_kept_connection(fresh_connections):
    server = ScriptedServer(delay=lambda number: 1.5 if number == 2 else 0)
    try:
        assert client(server.url, read_timeout=5).salesorder_update(VALUES).ok
        started = time.monotonic()
        impatient = client(server.url, read_timeout=0.3).salesorder_update(VALUES)
        waited = time.monotonic() - started
    finally:
        server.close()
    assert server.connections == 1, "the second call went on the first's connection"
    assert impatient.transient and impatient.describe().startswith("timeout")
    assert waited < 1.2, "not the first client's 5 s"


def test_a_reply_that_closes_its_connection_is_not_kept(fresh_connections):
    server = ScriptedServer(reply=lambda number: _response(OK, "Connection: close"))
    try:
        assert client(server.url).salesorder_update(VALUES).ok
        assert transport._sockets() == {}
    finally:
        server.close()


def test_an_oversized_reply_is_refused_and_its_connection_dropped(fresh_connections):
    huge = b"{" + b" " * (300 * 1024) + b"}"
    server = ScriptedServer(reply=lambda number: _response(huge if number == 1 else OK))
    try:
        refused = client(server.url).salesorder_update(VALUES)
        assert transport._sockets() == {}, "its body was not read to its end"
        after = client(server.url).salesorder_update(VALUES)
    finally:
        server.close()
    assert refused.transient and "larger than" in refused.describe()
    assert after.ok and server.connections == 2


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/router qm", "/router%20qm"),
        ("/网关/qm", "/%E7%BD%91%E5%85%B3/qm"),
        # urlsplit drops CR and LF (as WHATWG's URL parser): no header can be injected
        ("/router/qm\r\nX-Injected: 1", "/router/qmX-Injected:%201"),
    ],
)
def test_the_configured_path_is_quoted_as_requests_quotes_it(fresh_connections, path, sent):
    server = ScriptedServer()
    try:
        result = client(f"http://localhost:{server.port}{path}").salesorder_update(VALUES)
    finally:
        server.close()
    assert result.ok, result.describe()
    ((line, headers, _body),) = server.requests
    assert urlsplit(line.split(" ")[1]).path == sent
    assert "X-Injected" not in headers


def test_a_url_that_is_not_http_is_refused_unsent(fresh_connections):
    result = client("ftp://localhost/router/qm").salesorder_update(VALUES)
    assert result.transient and "not a usable URL" in result.describe()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for localhost: (its file, a server context with it)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl (the command) is needed to make a certificate")
    cert, key = tmp_path / "gateway.pem", tmp_path / "gateway.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    subprocess.run(
        [*command, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return str(cert), context


def test_https_verifies_the_gateway_against_the_ca_bundle(
    fresh_connections, certificate, monkeypatch
):
    cert, context = certificate
    server = ScriptedServer(tls=context)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    environment_settings.cache_clear()
    try:
        untrusted = client(server.url).salesorder_update(VALUES)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # as requests reads it
        environment_settings.cache_clear()
        trusted = client(server.url).salesorder_update(VALUES)
    finally:
        environment_settings.cache_clear()
        server.close()
    assert untrusted.transient and "CERTIFICATE_VERIFY_FAILED" in untrusted.describe()
    assert trusted.ok, trusted.describe()
    assert len(server.requests) == 1, "nothing was sent to the untrusted gateway"
