"""Qimen time: ``yyyy-MM-dd HH:mm:ss`` wall-clock time in GMT+8."""

from datetime import datetime, timezone

from .const import DATETIME_FORMAT, TZ_GMT8


def to_gmt8(value):
    """Return ``value`` as a Qimen time string; naive datetimes are taken as UTC
    (as Odoo stores them), strings are returned unchanged."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(TZ_GMT8).strftime(DATETIME_FORMAT)


def now_gmt8():
    return to_gmt8(datetime.now(timezone.utc))


def parse_gmt8(text):
    """Parse a Qimen time string into an aware datetime, or raise ``ValueError``."""
    return datetime.strptime(text.strip(), DATETIME_FORMAT).replace(tzinfo=TZ_GMT8)


def parse_gmt8_to_utc_naive(text):
    """Parse a Qimen time string into a naive UTC datetime (Odoo's storage)."""
    return parse_gmt8(text).astimezone(timezone.utc).replace(tzinfo=None)
