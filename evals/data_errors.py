"""Turn data and configuration mistakes into one readable CLI line, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from labelgate.evals.dilemmas.data import DataError
from labelgate.guard.cli import CLIError
from labelgate.guard.models import ModelError


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except (DataError, ModelError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CLIError(f"invalid options: {first['loc']}: {first['msg']}") from None
    except ValueError as exc:  # e.g. resuming a run with other options
        raise CLIError(str(exc)) from None
