"""Hostile and broken files through real import runs: each is rejected with its file, record
and line named and nothing left staged, or imported with an issue on the offending row."""

from __future__ import annotations

import json

import pytest

from ingestion_pipeline_tests.helpers import HEADER, import_bytes, rows, scalar

GOOD = [f"user{i}@acme.io,First{i},Last{i},Acme" for i in range(1, 301)]


def body(*lines: str) -> bytes:
    return (HEADER + "".join(f"{line}\n" for line in lines)).encode()


def open_issues(engine, job_id: str) -> list[tuple]:
    return rows(
        engine,
        "SELECT i.kind, i.field, i.message, array_agg(ii.row_number ORDER BY 1) FROM issues i "
        "JOIN issue_items ii USING (issue_id) WHERE i.job_id = :j AND NOT i.resolved "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        j=job_id,
    )


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "empty.csv: the file is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "empty.csv: this is a binary file"),
        (
            body(*GOOD[:150], 'late@acme.io,"Late,Comer,Acme', *GOOD[150:]),
            "empty.csv, record 151 (line 152): a quoted field starts here and is never closed "
            "(unterminated quote)",
        ),
        (
            body(*GOOD[:250], 'odd@acme.io,"Odd" Name,Ray,Acme', *GOOD[250:]),
            "empty.csv, record 251 (line 252): a closing quote is followed by more text; a quote "
            'inside a quoted field is written twice ("")',
        ),
        (
            body(*GOOD[:10]) + b'user11@acme.io,"First11,Last11,Acme\nuser12@acme.io,Firs',
            "empty.csv, record 11 (line 12): a quoted field starts here and is never closed",
        ),
    ],
    ids=["empty", "binary", "unterminated-quote", "stray-quote", "cut-off-inside-quotes"],
)
def test_unreadable_files_fail_their_job_naming_file_record_and_line_and_stage_nothing(
    engine, instance, resources, local_zone, monkeypatch, content, error
):
    # Small chunks: the bad records come after whole chunks were staged, which must go again.
    monkeypatch.setenv("IMPORT_CHUNK_SIZE", "50")
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", "empty.csv", content
    )
    assert not result.success
    assert job.status == "FAILED"
    assert job.error.startswith(error), job.error
    assert (job.processed_rows, job.total_rows, job.issue_count) == (0, None, 0)
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 0
    assert scalar(engine, "SELECT count(*) FROM issues") == 0
    assert scalar(engine, "SELECT count(*) FROM contacts") == 0


def test_header_only_file_completes_with_zero_rows(engine, instance, resources, local_zone):
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", "h.csv", HEADER.encode()
    )
    assert result.success
    assert (job.status, job.total_rows, job.contacts_created) == ("COMPLETED", 0, 0)


def test_a_row_with_too_many_fields_is_an_issue_and_short_rows_are_padded(
    engine, instance, resources, local_zone
):
    content = (
        body(
            "ann@acme.io,Ann,Lee,Acme",
            "bob@acme.io,Bob,Ray,Acme,surplus,more",  # 2: six fields
            "cy@acme.io,Cy",  # 3: two fields
            "dee@acme.io,Dee,Day,Acme,",  # 4: a trailing delimiter is fine
        )
        + b"eve@acme.io,Eve,Ra"
    )  # 5: cut off mid-record, no newline
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "r.csv", content)
    assert result.success
    assert (job.status, job.total_rows) == ("NEEDS_REVIEW", 5)
    # Rows 3 and 5 are short: padded with empty values, they miss only what is required.
    assert open_issues(engine, job.job_id) == [
        (
            "malformed_record",
            "record",
            "the record has 6 fields where the header has 4; values past the header are kept "
            "in extra as column_N",
            [2],
        ),
        ("missing_field", "company", "company is required but empty", [3, 5]),
        ("missing_field", "last_name", "last_name is required but empty", [3]),
    ]
    extra = scalar(
        engine,
        "SELECT extra FROM staging_rows WHERE job_id = :j AND row_number = 2",
        j=job.job_id,
    )
    assert extra == {"column_5": "surplus", "column_6": "more"}
    assert rows(
        engine, "SELECT row_number, status FROM staging_rows WHERE job_id = :j ORDER BY 1",
        j=job.job_id,
    ) == [(1, "READY"), (2, "ISSUE"), (3, "ISSUE"), (4, "READY"), (5, "ISSUE")]  # fmt: skip


def test_nul_bytes_make_an_issue_on_their_row_and_never_reach_the_database_raw(
    engine, instance, resources, local_zone
):
    lines = [f"{line}," for line in GOOD]
    lines.insert(200, "nul@acme.io,Nu\x00ll,Ray,Acme,note\x00here")
    content = (HEADER.strip() + ",notes\n" + "".join(f"{line}\n" for line in lines)).encode()
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "n.csv", content)
    assert result.success
    assert job.status == "NEEDS_REVIEW"
    assert open_issues(engine, job.job_id) == [
        (
            "malformed_record",
            "record",
            "the record holds NUL bytes, shown as U+FFFD; fix or discard it",
            [201],
        )
    ]
    staged = rows(
        engine,
        "SELECT first_name, extra FROM staging_rows WHERE job_id = :j AND row_number = 201",
        j=job.job_id,
    )
    assert staged == [("Nu\ufffdll", {"notes": "note\ufffdhere"})]


def test_invalid_utf8_bytes_fail_the_job_naming_the_record_and_stage_nothing(
    engine, instance, resources, local_zone, monkeypatch
):
    monkeypatch.setenv("IMPORT_CHUNK_SIZE", "1000")
    # Past the bytes the encoding is detected from (256 KiB), where no fallback can apply.
    lines = ["zoë@acme.io,Zoë,Lee,Acme", *(f"u{i}@acme.io,F,L,C" for i in range(2, 20_001))]
    content = body(*lines) + b"bad@acme.io,B\xffd,Byte,Co\n"
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "u.csv", content)
    assert not result.success
    assert job.error == "u.csv, record 20001: invalid utf-8 bytes (b'\\xff' in first_name)"
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 0


def test_a_ten_megabyte_field(engine, instance, resources, local_zone):
    huge = "x" * (10 * 1024 * 1024)
    content = (
        "email,first_name,last_name,company,notes\n"
        f"ann@acme.io,Ann,Lee,Acme,{huge}\n"
        f"bob@acme.io,Bob,Ray,{huge}\n"
        "cy@acme.io,Cy,Day,Acme\n"
    ).encode()
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "big.csv", content)
    assert result.success
    assert (job.status, job.total_rows) == ("NEEDS_REVIEW", 3)
    # In a contact field: an issue on that row. In an extra column: kept whole.
    issues = open_issues(engine, job.job_id)
    assert ("value_too_long", "company", "company is longer than 255 characters", [2]) in issues
    length = scalar(
        engine,
        "SELECT length(extra->>'notes') FROM staging_rows WHERE job_id = :j AND row_number = 1",
        j=job.job_id,
    )
    assert length == len(huge)


def test_duplicate_header_names_are_kept_apart_and_two_columns_for_one_field_are_candidates(
    engine, instance, resources, local_zone
):
    content = b"email,first_name,last_name,company,notes,notes\nann@acme.io,Ann,Lee,Acme,a,b\n"
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "d.csv", content)
    assert result.success and job.status == "COMPLETED"
    assert scalar(engine, "SELECT extra FROM contacts") == {"notes": "a", "notes_2": "b"}

    # Each row takes the first non-blank of the two; the second stays in extra.
    both = b"email,e-mail,first_name,last_name,company\nal@acme.io,x@acme.io,Al,Lee,Acme\n"
    both += b",bo@acme.io,Bo,Ray,Acme\n"
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "e.csv", both)
    assert result.success and job.status == "COMPLETED"
    assert job.mapping["fields"]["email"] == ["email", "e-mail"]
    assert rows(
        engine, "SELECT email, extra FROM contacts WHERE job_id = :j ORDER BY 1", j=job.job_id
    ) == [("al@acme.io", {"e-mail": "x@acme.io"}), ("bo@acme.io", {"e-mail": "bo@acme.io"})]


def test_nul_escapes_in_json_records_are_an_issue_too(engine, instance, resources, local_zone):
    records = [
        {"email": "a@acme.io", "first_name": "A", "last_name": "B", "company": "C"},
        {"email": "n@acme.io", "first_name": "N\u0000", "last_name": "B", "company": "C",
         "note": {"text": "x\u0000y"}},
    ]  # fmt: skip
    content = "\n".join(json.dumps(r) for r in records).encode()
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "n.ndjson", content)
    assert result.success
    assert job.status == "NEEDS_REVIEW"
    assert [i[3] for i in open_issues(engine, job.job_id)] == [[2]]
    staged = rows(
        engine,
        "SELECT first_name, extra FROM staging_rows WHERE job_id = :j AND row_number = 2",
        j=job.job_id,
    )
    assert staged == [("N\ufffd", {"note": {"text": "x\ufffdy"}})]


def test_cp1252_semicolon_export_with_trailing_delimiters_on_every_line_imports(
    engine, instance, resources, local_zone
):
    # European Excel's "CSV (semicolon)": cp1252, CRLF, and ';;' closing every line, so the
    # two unnamed columns past the header are empty in every record.
    lines = ["E-Mail;Vorname;Nachname;Firma;;"] + [
        f"user{i}@example.de;J\u00fcrgen{i};M\u00fcller;B\u00e4ckerei GmbH;;" for i in range(1, 6)
    ]
    content = ("\r\n".join(lines) + "\r\n").encode("cp1252")
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "k.csv", content)
    assert result.success, job.error
    assert (job.status, job.total_rows, job.contacts_created) == ("COMPLETED", 5, 5)
    assert (job.encoding, job.delimiter) == ("cp1252", "semicolon")
    assert rows(engine, "SELECT first_name, last_name, company, extra FROM contacts LIMIT 1") == [
        ("J\u00fcrgen1", "M\u00fcller", "B\u00e4ckerei GmbH", None)
    ]


def test_a_deterministic_error_while_preparing_records_fails_once_naming_file_and_record(
    engine, instance, resources, local_zone, monkeypatch
):
    from dagster import DagsterEventType

    import ingestion_pipeline.importer as importer

    real = importer.prepare_chunk

    def breaks_on_second_chunk(frame, job_id, *dataset):
        if frame["row_number"].iloc[0] > 1:
            raise ValueError("Length of values (1) does not match length of index (2)")
        return real(frame, job_id, *dataset)

    monkeypatch.setenv("IMPORT_CHUNK_SIZE", "100")
    monkeypatch.setattr(importer, "prepare_chunk", breaks_on_second_chunk)
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", "b.csv", body(*GOOD)
    )
    assert not result.success
    assert job.status == "FAILED"
    assert job.error == (
        "b.csv, record 101: the records from here on could not be prepared: ValueError: "
        "Length of values (1) does not match length of index (2)"
    )
    retries = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY
    ).records
    assert retries == []
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 0
