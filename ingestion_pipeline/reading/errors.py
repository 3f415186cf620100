"""The error a file gets when it cannot be read as contacts."""

from __future__ import annotations


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
