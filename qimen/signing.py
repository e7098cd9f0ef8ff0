"""Qimen/TOP request signatures.

sorted ``name + value`` of every non-blank parameter but ``sign``, then the raw body if
any; ``md5`` wraps the string in the secret, ``hmac``/``hmac-sha256`` key it with it.
"""

import hashlib
import hmac

from .errors import QimenValidationError


def _to_bytes(value):
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def string_to_sign(params, body=None):
    """Return the UTF-8 bytes that are digested, without the secret."""
    parts = []
    for name in sorted(params):
        value = params[name]
        if name == "sign" or value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        if not text.strip():
            continue
        parts.append(_to_bytes(name) + _to_bytes(text))
    return b"".join(parts) + _to_bytes(body)


def sign(params, secret, sign_method="md5", body=None):
    """Sign ``params`` (and the raw ``body`` when given) with ``secret``.

    :return: the upper-case hex digest.
    """
    data = string_to_sign(params, body)
    key = _to_bytes(secret)
    method = (sign_method or "md5").lower()
    if method == "md5":
        digest = hashlib.md5(key + data + key).hexdigest()  # noqa: S324 - protocol
    elif method == "hmac":
        digest = hmac.new(key, data, hashlib.md5).hexdigest()
    elif method == "hmac-sha256":
        digest = hmac.new(key, data, hashlib.sha256).hexdigest()
    else:
        raise QimenValidationError("sign_method", f"unsupported sign method {sign_method!r}")
    return digest.upper()


def verify(params, secret, signature, sign_method="md5", body=None):
    """Constant-time check of ``signature`` (any case) against the expected one."""
    if not signature or not secret:
        return False
    try:
        expected = sign(params, secret, sign_method, body)
    except QimenValidationError:
        return False
    return hmac.compare_digest(
        expected.encode("ascii"), str(signature).strip().upper().encode("utf-8")
    )
