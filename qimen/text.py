"""Texts that can be stored and shown whatever bytes a peer sent."""

import re

# C0 controls but tab, line feed and carriage return: PostgreSQL refuses NUL in text and
# jsonb, and the others garble logs and screens.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def storable(text):
    """``text`` with control characters shown as ``\\xNN`` escapes (NUL included)."""
    if text is None:
        return ""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
