"""The error a file gets when it cannot be read as contacts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UnreadableFileError(ValueError):
    """A file that cannot be imported as contacts; names the file and, when known, the record."""

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
