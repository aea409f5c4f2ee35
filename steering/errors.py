"""Errors raised by the GUARD-IT library (arXiv 2605.12765).

Every message says what was expected and what was found, so the application can show it as is.
"""

from __future__ import annotations


class SteeringError(Exception):
    """Base class of every error the library raises on bad input or state."""

    #: Name of the offending input field, when one is to blame (used by the HTTP layer).
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field


class ForgetSetError(SteeringError):
    """A forget set (or its file) is empty, too large or malformed."""


class ConfigError(SteeringError):
    """A parameter is out of range: layer, threshold, alpha, k."""


class UnsupportedModelError(SteeringError):
    """The model's architecture has no known residual-stream hook site."""


class ModelLoadError(SteeringError):
    """The model or embedder could not be found or loaded."""


class UnknownForgetSetError(SteeringError):
    """A forget-set id is not known to the steering state."""
