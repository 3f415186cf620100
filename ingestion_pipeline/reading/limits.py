"""Expansion limits for compressed input (a gzip upload, the zip members of a workbook),
checked while inflating: nothing past a limit is ever held."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

from ingestion_pipeline.reading.errors import UnreadableFileError

# A compressed stream may expand to this many bytes at most, and past DECOMPRESSED_FREE bytes
# to at most MAX_RATIO times the compressed bytes read: exports compress 5-20x, a bomb 1000x.
MAX_DECOMPRESSED = 20 * 1024**3
DECOMPRESSED_FREE = 64 * 1024**2
MAX_RATIO = 100


class ExpansionLimit(io.RawIOBase):
    """An inflating stream that raises UnreadableFileError past the size or ratio limits,
    while it is being read. `compressed` says how many compressed bytes stand behind what
    was inflated so far (for a zip member: its whole compressed size, which the zip reader
    never reads past)."""

    def __init__(
        self,
        inner: BinaryIO,
        compressed: Callable[[], int],
        file_name: str,
        what: str = "",
    ) -> None:
        self._inner = inner
        self._compressed = compressed
        self._file_name = file_name
        self._what = what
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        compressed = max(1, self._compressed())
        ratio = self.count / compressed
        if self.count > MAX_DECOMPRESSED or (self.count > DECOMPRESSED_FREE and ratio > MAX_RATIO):
            raise UnreadableFileError(
                self._file_name,
                f"{self._what}decompresses to more than {self.count // 1024**2} MiB from "
                f"{compressed // 1024} KiB ({ratio:.0f}x): a compression bomb, not an export "
                f"(limits: {MAX_RATIO}x past {DECOMPRESSED_FREE // 1024**2} MiB, "
                f"{MAX_DECOMPRESSED // 1024**3} GiB in all)",
            )
        return n
