"""Memory bounded by the chunk size against hostile input: a compression bomb and an
oversized line are rejected while they are being read, within the memory bound."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ingestion_pipeline_tests.helpers import import_with_peak_rss, rows

HEADER = b"email,first_name,last_name,company\n"
MIB = 1024 * 1024


def write_gzip(path: Path, head: bytes, unit: bytes, total: int) -> None:
    """`head`, then `unit` repeated up to `total` bytes, gzipped, without holding it whole."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(head)
        block = unit * (MIB // len(unit))
        for _ in range(total // len(block)):
            out.write(block)


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        # One 160 MiB line (the reported bomb held 512 MB; past the limit nothing differs):
        # rejected at 32 MiB, before the line is held whole.
        (b"a", "record 1 (line 2): a line longer than 32 MiB starts here"),
        # Short lines that expand 1000x: rejected by the ratio past 64 MiB.
        (b"ann@acme.io,Ann,Lee,Acme\n", "a compression bomb, not an export"),
    ],
    ids=["one-long-line", "ratio"],
)
def test_a_gzip_bomb_is_rejected_while_read_within_the_memory_bound(
    tmp_path, database_url, engine, unit, expected
):
    path = tmp_path / "bomb.csv.gz"
    write_gzip(path, HEADER, unit, 160 * MIB)
    assert path.stat().st_size < 2 * MIB
    code, _, err, peak = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 2, err[-2000:]
    assert "bomb.csv.gz: import rejected: bomb.csv.gz" in err and expected in err, err[-2000:]
    assert peak <= 400, f"peak RSS {peak:.0f} MiB"
    assert rows(engine, "SELECT status, total_rows FROM import_jobs") == [("FAILED", None)]
    assert rows(engine, "SELECT count(*) FROM staging_rows") == [(0,)]


def test_an_oversized_ndjson_line_is_rejected_naming_its_record(tmp_path, database_url, engine):
    path = tmp_path / "big.ndjson"
    with path.open("wb") as out:
        out.write(json.dumps({"email": "a@acme.io", "first_name": "A", "last_name": "B",
                              "company": "C"}).encode() + b"\n")  # fmt: skip
        out.write(b'{"email": "b@acme.io", "note": "' + b"x" * (40 * MIB) + b'"}\n')
    code, _, err, peak = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 2, err[-2000:]
    assert "big.ndjson, record 2 (line 2): a line longer than 32 MiB starts here" in err
    assert peak <= 400, f"peak RSS {peak:.0f} MiB"
