"""Exceptions of the protocol package."""


class QimenError(Exception):
    """Base class of every error raised by the protocol package."""


class QimenValidationError(QimenError, ValueError):
    """A parameter is missing or invalid; ``field`` names it."""

    def __init__(self, field, message):
        self.field = field
        super().__init__(f"{field}: {message}")


class QimenXMLError(QimenError, ValueError):
    """An XML document was rejected (malformed, DTD/entities, too large)."""
