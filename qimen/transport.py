"""The wire under :meth:`.client.QimenClient._post`: a POST on a connection kept alive
per thread and gateway, on Python's own ``http.client``.

Sending a request and reading its reply through ``requests`` cost about 2.3 ms of CPU
against 0.7 ms with ``http.client`` (one thread, the sandbox gateway, the same request:
``requests`` parses and re-quotes the URL, merges settings and hooks, and wraps each
layer); writing the request in one send saved a little more. Lanes send from threads of one
interpreter, so that CPU is also time every other lane waits for. ``requests`` stays
for what it does and this does not: a proxy the environment sets (see
:func:`.client.environment_settings`) and a session a caller hands over.

Failures are raised as ``requests``' exceptions, so that the client tells them apart in
one place: no answer in time (:class:`requests.Timeout`), no connection
(:class:`requests.ConnectionError`). A request is sent once: a kept-alive connection
the gateway closed meanwhile is found before sending, and a new one is opened."""

import functools
import http.client
import re
import select
import socket
import ssl
import threading
from urllib.parse import urlsplit

import requests
from requests.utils import requote_uri

_local = threading.local()
# what may not appear in a request line: whitespace and control characters
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


@functools.lru_cache(maxsize=8)
def tls_context(verify):
    """The TLS context of ``verify`` as requests reads it: a CA bundle path, or True
    (requests' own bundle)."""
    cafile = verify if isinstance(verify, str) else requests.utils.DEFAULT_CA_BUNDLE_PATH
    return ssl.create_default_context(cafile=cafile)


def _sockets():
    pool = getattr(_local, "sockets", None)
    if pool is None:
        pool = _local.sockets = {}
    return pool


def _dropped(sock):
    """Whether a kept-alive connection was closed by the other end (readable while no
    request is under way means EOF or an unexpected byte: either way, not usable).
    ``poll``, as urllib3 does: ``select`` fails on descriptors above 1023."""
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _socket(key, timeout):
    """This thread's open connection for ``key``, or a new one connected within the
    connect timeout (:func:`post` then sets its call's read timeout)."""
    scheme, host, port, verify = key
    pool = _sockets()
    sock = pool.get(key)
    if sock is not None and not _dropped(sock):
        return sock
    forget(key)
    connect = timeout[0]
    try:
        sock = socket.create_connection((host, port), timeout=connect)
    except TimeoutError as exc:
        raise requests.ConnectTimeout(f"connect to {host}:{port} timed out: {exc}") from None
    except OSError as exc:
        raise requests.ConnectionError(f"cannot connect to {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = tls_context(verify).wrap_socket(sock, server_hostname=host)
    except TimeoutError as exc:
        sock.close()
        raise requests.ConnectTimeout(f"TLS with {host}:{port} timed out: {exc}") from None
    except OSError as exc:  # ssl.SSLError included
        sock.close()
        raise requests.ConnectionError(f"TLS with {host}:{port} failed: {exc}") from None
    pool[key] = sock
    return sock


def forget(key):
    """Close this thread's connection for ``key``, if any."""
    sock = _sockets().pop(key, None)
    if sock is not None:
        sock.close()


def post(url, body, content_type, timeout, verify=True):
    """POST ``body`` (bytes) to ``url`` (its query string included), the request in one
    send; return the response with its headers read, and the key of its connection
    (see :func:`forget`: to close it when its body cannot be read to its end or it may
    not be kept). ``timeout`` is ``(connect, read)`` seconds; ``verify`` the CA bundle
    (see :func:`tls_context`)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # the configured path quoted as requests quotes it (spaces, non-ASCII); the query
    # string is ours, already encoded
    target = requote_uri(parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if scheme not in ("http", "https") or not parts.hostname or _UNSAFE.search(target):
        raise requests.exceptions.InvalidURL(f"not a usable URL: {parts.scheme}://{parts.netloc}")
    port = parts.port or (443 if scheme == "https" else 80)
    name = parts.hostname.encode("idna").decode("ascii")
    if ":" in name:  # an IPv6 address
        name = f"[{name}]"
    host = name if port == (443 if scheme == "https" else 80) else f"{name}:{port}"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    key = (scheme, parts.hostname, port, verify)
    sock = _socket(key, timeout)
    sock.settimeout(timeout[1])  # this client's read timeout: a kept socket may be another's
    try:
        sock.sendall(head.encode("latin-1") + body)
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
    except TimeoutError as exc:
        forget(key)
        raise requests.ReadTimeout(f"no reply within {timeout[1]:g}s: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        forget(key)
        raise requests.ConnectionError(
            f"connection to {parts.hostname}:{port} failed: {exc!r}"
        ) from None
    return response, key
