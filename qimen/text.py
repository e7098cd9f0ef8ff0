"""Texts that can be stored and shown whatever a peer sent."""

import re

# C0 controls but tab, line feed and carriage return: PostgreSQL refuses NUL in text and
# jsonb, and the others garble logs and screens.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def storable(text, max_chars=None):
    """``text`` (str or bytes, from anyone) as it may be stored and shown: undecodable
    bytes replaced, control characters (NUL included) and lone surrogates escaped as
    ``\\xNN`` / ``\\udNNN``, cut at ``max_chars``."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars] + "…"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
