"""The classifier's error."""

from shared.errors import StancestreamError


class ClassifierError(StancestreamError):
    """The model or adapter cannot be loaded or used."""
