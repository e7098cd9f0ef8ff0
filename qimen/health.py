"""Telling the company's failures from an order's own: what the circuit breaker reads.

A gateway that does not answer, answers with server errors, or refuses our credentials
fails every order alike: retrying each order on its own would only burn their attempts
and hammer the gateway. An order's own failure (an invalid parameter of that order, a
business ``failure`` of the ERP) says nothing of the others."""

from .responses import PERMANENT, TRANSIENT

UNREACHABLE = "unreachable"  # no HTTP answer: refused, reset, timed out
GATEWAY = "gateway"  # HTTP 5xx or 429, isp.*, platform codes 7/10/15, unparsable replies
CREDENTIALS = "credentials"  # signature, app key refused (25, 28, 29, isv.invalid-signature)
ORDER = "order"  # the order's own: its data, or the ERP's business answer about it

SYSTEMIC_KINDS = (UNREACHABLE, GATEWAY, CREDENTIALS)
CREDENTIAL_CODES = frozenset({"25", "28", "29"})
CREDENTIAL_SUB_CODES = ("signature", "appkey", "app-key", "app_key")


def failure_kind(result):
    """The kind of a failed :class:`~.client.SendResult` (None for a success)."""
    if result.ok:
        return None
    sub_code = (result.sub_code or "").lower()
    if result.code in CREDENTIAL_CODES or any(word in sub_code for word in CREDENTIAL_SUB_CODES):
        return CREDENTIALS
    if result.outcome == TRANSIENT:
        return GATEWAY if result.http_status else UNREACHABLE
    assert result.outcome == PERMANENT, result.outcome
    return ORDER
