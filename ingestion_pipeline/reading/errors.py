"""The error a file gets when it cannot be read as its dataset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class UnreadableFileError(ValueError):
    """A file that cannot be imported; names the file and, when known, the record."""

    def __init__(
        self, file_name: str, problem: str, *, record: int | None = None, line: int | None = None
    ) -> None:
        self.file_name = file_name
        self.problem = problem
        self.record = record
        self.line = line
        where = f"{file_name}, record {record}" if record is not None else file_name
        if line is not None:
            where += f" (line {line})"
        super().__init__(f"{where}: {problem}")


# Errors that reading or preparing records raises deterministically: the same bytes fail the
# same way every time, so retrying them only hides the cause. I/O errors (OSError, the S3
# client's) are not among them: those may pass.
DETERMINISTIC_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
)


@contextmanager
def records_from(file_name: str, first_record: int) -> Iterator[None]:
    """Turn a deterministic error while handling records from `first_record` on into an
    UnreadableFileError naming the file, the record and the cause (never retried)."""
    try:
        yield
    except UnreadableFileError:
        raise
    except DETERMINISTIC_ERRORS as exc:
        raise UnreadableFileError(
            file_name,
            f"the records from here on could not be prepared: {type(exc).__name__}: {exc}",
            record=first_record,
        ) from exc


# The longest line (and, for CSV, the longest field) a file may have: a 10 MB notes cell fits,
# and memory stays bounded whatever the input (a line is held whole before it is parsed).
MAX_LINE_CHARS = 32 * 1024 * 1024


class LineTooLongError(ValueError):
    """A physical line longer than MAX_LINE_CHARS, found while it was being read."""

    def __init__(self, line: int) -> None:
        self.line = line
        super().__init__(
            f"a line longer than {MAX_LINE_CHARS // (1024 * 1024)} MiB starts here: not a "
            "contacts export (or one field holds far more than a cell can)"
        )


def bounded_lines(text: TextIO, limit: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of `text`, each read with at most `limit` characters held: a longer line
    raises LineTooLongError before the rest of it is read."""
    number = 0
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            raise LineTooLongError(number)
        yield line
