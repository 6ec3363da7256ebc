"""Errors that reach the user as one line.

Every failure a user can cause (bad config, bad input file, missing upstream output) raises a subclass of
``ArpipeError`` whose message says what is wrong and what to change. The CLI prints ``error: <message>``
and exits non-zero; it never shows a traceback for these.
"""


class ArpipeError(Exception):
    """Base class: the message is complete, one line, and meant for the user."""


class ConfigError(ArpipeError):
    """The configuration is invalid; raised before any work starts."""


class InputError(ArpipeError):
    """An input file or record cannot be used under the current policy."""


class StageError(ArpipeError):
    """A stage cannot run: missing or inconsistent upstream outputs, corrupt outputs."""


class GateFailed(ArpipeError):
    """A new model regressed beyond the configured tolerance: the run's evaluation gate failed."""


def exception_chain(exc):
    """``exc``, then the exceptions it was raised from or while handling (``__cause__``, else
    ``__context__``), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
