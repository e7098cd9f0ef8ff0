"""Qimen (奇门) protocol for the POS order-status APIs.

Plain Python: signing, request building and validation, response parsing, the HTTP
client, the receiving side and a local sandbox gateway. Never imports ``odoo`` so it
can be tested and used without a server.
"""

from .client import QimenClient, SendResult
from .errors import QimenError, QimenValidationError
from .request import build_salesorder_update, system_params
from .signing import sign, verify

__all__ = [
    "QimenClient",
    "QimenError",
    "QimenValidationError",
    "SendResult",
    "build_salesorder_update",
    "sign",
    "system_params",
    "verify",
]
