"""Excel workbooks imported like CSV: the sheet found by its header, cells as a person sees
them, title rows and totals reported, not staged, and memory bounded at 100k rows."""

from __future__ import annotations

import datetime as dt
import io
import json

import openpyxl
import pandas as pd
import xlwt

from ingestion_pipeline.reading import open_upload
from ingestion_pipeline_tests.helpers import import_bytes, import_with_peak_rss, rows

HEADER = ["Email", "First Name", "Last Name", "Company", "Phone", "Zip", "Birthday", "Score"]


def workbook(*sheets: tuple[str, list[list]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, lines in sheets:
        sheet = book.create_sheet(title)
        for line in lines:
            sheet.append(line)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


REPORT = workbook(
    ("Summary", [["Quarterly report"], ["Region", "Revenue"], ["EU", 12.5]]),
    (
        "Contacts",
        [
            ["Contacts export, 2026-11-01"],
            [],
            HEADER,
            ["ann@acme.io", "Ann", "Lee", "Acme", "+49 170 1234", "01234",
             dt.date(1990, 5, 17), 12.0],
            ["bob@acme.io", "Bob", "Ray", "Acme", 4915112345, "00501",
             dt.datetime(1984, 1, 2, 13, 45), 3.5],
            [],
            ["Total", None, None, None, None, None, None, 15.5],
        ],
    ),
)  # fmt: skip


def test_the_contacts_sheet_is_found_and_cells_read_as_a_person_sees_them(
    engine, instance, resources, local_zone
):
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "q.xlsx", REPORT)
    assert result.success, job.error
    assert (job.status, job.total_rows, job.contacts_created) == ("COMPLETED", 2, 2)
    layout = job.layout
    assert layout["sheet"] == "Contacts"
    assert layout["skipped_before_header"] == [{"line": 1, "text": "Contacts export, 2026-11-01"}]
    assert layout["footer"] == ["Total 15.5"]
    assert rows(engine, "SELECT email, extra FROM contacts ORDER BY source_row") == [
        (
            "ann@acme.io",
            {"Phone": "+49 170 1234", "Zip": "01234", "Birthday": "1990-05-17", "Score": "12"},
        ),
        (
            "bob@acme.io",
            {"Phone": "4915112345", "Zip": "00501", "Birthday": "1984-01-02T13:45:00",
             "Score": "3.5"},
        ),
    ]  # fmt: skip


def test_a_workbook_without_a_contacts_header_is_rejected_by_name(
    engine, instance, resources, local_zone
):
    content = workbook(("Sheet1", [["Region", "Revenue"], ["EU", 1]]))
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "r.xlsx", content)
    assert not result.success
    assert job.error.startswith("r.xlsx: no email column found; the header has: Region")
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", "z.xlsx", b"PK\x03\x04 not a zip"
    )
    assert not result.success
    assert job.error.startswith("z.xlsx: not a readable workbook")


def test_100k_row_workbook_imports_within_the_memory_bound(tmp_path, database_url, engine):
    path = tmp_path / "big.xlsx"
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    sheet.append(HEADER)
    for i in range(100_000):
        sheet.append([f"user{i}@acme.io", f"F{i}", f"L{i}", "Acme", f"+4930{i:07d}",
                      f"{i % 99999:05d}", dt.date(2000, 1, 1 + i % 28), i])  # fmt: skip
    book.save(path)
    code, out, err, peak_mib = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 0, err[-2000:]
    summary = json.loads(out)
    assert (summary["status"], summary["contacts_created"]) == ("COMPLETED", 100_000)
    assert peak_mib <= 400, f"peak RSS {peak_mib:.0f} MiB"
    assert rows(engine, "SELECT extra->>'Zip' FROM contacts WHERE source_row = 8") == [("00007",)]


def test_xlsm_reads_like_xlsx():
    source = open_upload(io.BytesIO(REPORT), "macro.xlsm")
    assert source.format.sheet == "Contacts"
    assert sum(len(c.frame) for c in source.chunks(100)) == 2


def test_ods_and_legacy_xls_workbooks_import_like_xlsx(
    engine, instance, resources, local_zone, tmp_path
):
    frame = pd.DataFrame(
        {"E-mail": ["ann@acme.io", "bob@acme.io"], "First Name": ["Ann", "Bob"],
         "Last Name": ["Lee", "Ray"], "Company": ["Acme", "Acme"], "Zip": ["01234", "00501"]}
    )  # fmt: skip
    frame.to_excel(tmp_path / "c.ods", engine="odf", index=False, sheet_name="Kontakte")
    book = xlwt.Workbook()
    sheet = book.add_sheet("Contacts")
    for r, line in enumerate([list(frame.columns), *frame.itertuples(index=False)]):
        for c, value in enumerate(line):
            sheet.write(r, c, value)
    book.save(str(tmp_path / "c.xls"))
    for name in ("c.ods", "c.xls"):
        content = (tmp_path / name).read_bytes()
        result, job = import_bytes(engine, instance, resources, local_zone, name[2:], name, content)
        assert result.success, job.error
        assert (job.status, job.contacts_created) == ("COMPLETED", 2), name
        assert rows(
            engine,
            "SELECT extra->>'Zip' FROM contacts WHERE job_id = :j ORDER BY 1",
            j=job.job_id,
        ) == [("00501",), ("01234",)]
