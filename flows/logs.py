"""Keep tracebacks of user errors out of the terminal.

Prefect logs a failed task or flow with its traceback. For ``ArpipeError`` (bad config, bad input,
missing upstream output) the message is already complete and actionable, so on the console handlers
the traceback is dropped and only the one-line message remains; the Prefect API still receives the log.
"""

from __future__ import annotations

import logging

from arcore.errors import ArpipeError


class DropUserErrorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ArpipeError) or isinstance(getattr(exc, "__cause__", None), ArpipeError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_errors() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not any(
            isinstance(f, DropUserErrorTracebacks) for f in handler.filters
        ):
            handler.addFilter(DropUserErrorTracebacks())
