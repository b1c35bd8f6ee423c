"""Errors are exception classes with an exit code; the CLI maps them to messages once."""

from __future__ import annotations


class OcrqError(Exception):
    exit_code = 1


class UsageError(OcrqError):
    exit_code = 2


class BrokerUnavailable(OcrqError):
    """Redis (the Celery broker) cannot be reached."""

    exit_code = 3


class DatabaseUnavailable(OcrqError):
    exit_code = 4


class ModelError(OcrqError):
    """A model is missing, corrupt, or cannot be fetched."""

    exit_code = 5


class BadImage(OcrqError):
    """The input is not an image we will read; fails its own job, never retried."""

    exit_code = 6


class UnknownJob(OcrqError):
    """A job message names a job the worker's results database does not hold: the
    producer that sent it records jobs in another database."""

    exit_code = 7


class InputRejected(BadImage):
    """The input is outside the configured roots, too large, or otherwise refused."""


try:  # Celery's soft time limit is raised inside the running task by a signal, and it is
    # an Exception: code that turns "any failure" into a job's BadImage must let it pass.
    from billiard.exceptions import SoftTimeLimitExceeded as TimeLimitInterrupt
except ImportError:  # pragma: no cover - billiard comes with celery

    class TimeLimitInterrupt(Exception):  # type: ignore[no-redef]
        """Stand-in where billiard is not installed (never raised)."""
