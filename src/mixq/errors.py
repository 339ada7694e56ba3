"""The one exception hierarchy of mixq.

The CLI turns every ``MixqError`` into a one-line message and exit code 2; any other exception
(an ``InternalError`` or one mixq did not raise on purpose) is a mixq bug: one line that says so and
asks for a report, exit code 3, and the traceback with ``-v``.
"""

from __future__ import annotations


class MixqError(Exception):
    """Base of every error mixq raises on purpose (bad input, infeasible request)."""


class ConfigError(MixqError, ValueError):
    """A setting, flag or string (precision, budget, preprocessing) is malformed or contradictory."""


class DataError(MixqError):
    """The data cannot be read or does not fit the model (empty folder, unreadable image, bad shape)."""


class UnsupportedModelError(MixqError):
    """The model cannot be loaded, traced or run (corrupt file, factory that raises, NaN output)."""


class UnsupportedOpError(MixqError):
    """An op in the model cannot be quantized as asked."""


class BackendUnavailableError(MixqError):
    """An optional dependency a backend needs is not installed."""


class InfeasibleBudgetError(MixqError):
    """No configuration meets the budget; ``reachable`` says what can be met."""

    def __init__(self, message: str, reachable: float | None = None) -> None:
        super().__init__(message)
        self.reachable = reachable


class RunDirectoryError(MixqError):
    """The run directory cannot be written, or holds a run made with other settings."""


class CapabilityError(MixqError):
    """The backend (or runtime) cannot do what was asked, e.g. time kernels of a torch model; the message
    names the capability and what to do instead. Raised before any work starts."""


class ExportError(MixqError):
    """A plan cannot be written as the requested file (a group that cannot be mapped, an unwritable path)."""


class PluginError(MixqError):
    """A third-party plug-in is broken or clashes with another (two entries under one name)."""


class InternalError(Exception):
    """A mixq bug: an invariant that must hold did not. Not a ``MixqError`` (not the user's fault): the CLI
    says it is a bug, asks for a report and keeps the traceback (shown with ``-v``)."""


def internal(message: str) -> InternalError:
    """``raise internal("...")`` where an ``assert`` would have been: the message says it is a mixq bug."""
    return InternalError(f"mixq bug: {message}. Please report it with the command and `mixq --version`.")
