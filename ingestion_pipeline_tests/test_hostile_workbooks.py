"""Workbooks that attack: what a file declares is never trusted, memory stays bounded while it
is read, and the user is told which sheet and cell. Each file is written by hand as raw OOXML
or ODF at run time, the way an attacker would (no binary fixtures in the repository)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import xlwt

from ingestion_pipeline.reading import UnreadableFileError, open_upload
from ingestion_pipeline_tests.helpers import import_with_peak_rss, rows

MIB = 1024 * 1024
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
HEADER = ["email", "first_name", "last_name", "company"]
DATA = [
    ["ann@acme.io", "Ann", "Lee", "Acme"],
    ["bob@acme.io", "Bob", "Ray", "Acme"],
    ["cy@acme.io", "Cy", "Fox", "Acme"],
]


def _cells(number: int, values: list[str]) -> str:
    return "".join(
        f'<c r="{chr(65 + i)}{number}" t="inlineStr"><is><t>{v}</t></is></c>'
        for i, v in enumerate(values)
    )


def write_xlsx(path: Path | io.BytesIO, sheet_xml: str, shared: str | None = None) -> None:
    """A minimal workbook as Excel lays it out, one sheet named Contacts, written by hand."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as book:
        for name, text in _parts(sheet_xml).items():
            book.writestr(name, text)
        if shared is not None:
            book.writestr("xl/sharedStrings.xml", shared)


def _parts(sheet_xml: str) -> dict[str, str]:
    rels = "http://schemas.openxmlformats.org/package/2006/relationships"
    return {
        "_rels/.rels": f'<Relationships xmlns="{rels}"><Relationship Id="rId1" '
        f'Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
        '<sheet name="Contacts" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{rels}"><Relationship Id="rId1" '
        f'Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": sheet_xml,
    }


def sheet(body: str, dimension: str = "A1:D4") -> str:
    rows_xml = f'<row r="1">{_cells(1, HEADER)}</row>' + "".join(
        f'<row r="{n}">{_cells(n, values)}</row>' for n, values in enumerate(DATA, start=2)
    )
    return (
        f'<worksheet xmlns="{MAIN}"><dimension ref="{dimension}"/>'
        f"<sheetData>{rows_xml}{body}</sheetData></worksheet>"
    )


def assert_rejected(path: Path, database_url: str, tmp_path: Path, expected: str) -> None:
    code, _, err, peak = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 2, err[-2000:]
    assert expected in err, err[-2000:]
    assert peak <= 400, f"peak RSS {peak:.0f} MiB"


def test_a_cell_at_xfd1048576_is_refused_by_name_not_allocated(tmp_path, database_url, engine):
    # 1.7 KB that claims the whole sheet: a reader that trusts it allocates 512 GiB.
    path = tmp_path / "claims.xlsx"
    far = '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    write_xlsx(path, sheet(far, dimension="A1:XFD1048576"))
    assert path.stat().st_size < 2048
    assert_rejected(
        path,
        database_url,
        tmp_path,
        "claims.xlsx: sheet 'Contacts', cell XFD1048576: a value past column IZ",
    )
    assert rows(engine, "SELECT status FROM import_jobs") == [("FAILED",)]
    assert rows(engine, "SELECT count(*) FROM staging_rows") == [(0,)]


def test_a_dimension_that_lies_changes_nothing(tmp_path, engine, database_url):
    # The same three rows under a <dimension> of the whole sheet and stray empty cells far
    # right and far down: imported as three rows.
    path = tmp_path / "lies.xlsx"
    stray = '<row r="1048576"><c r="XFD1048576"/></row>'
    write_xlsx(path, sheet(stray, dimension="A1:XFD1048576"))
    code, out, err, peak = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 0, err[-2000:]
    assert (json.loads(out)["status"], json.loads(out)["contacts_created"]) == ("COMPLETED", 3)
    assert peak <= 400


@pytest.mark.parametrize("where", ["shared", "inline"])
def test_a_200_mb_cell_is_refused_while_read_naming_sheet_and_cell(
    tmp_path, database_url, engine, where
):
    path = tmp_path / "huge-cell.xlsx"
    big = "a" * (200 * 1000 * 1000)
    if where == "shared":
        strings = f'<sst xmlns="{MAIN}"><si><t>{big}</t></si></sst>'
        cell = '<row r="5"><c r="A5" t="s"><v>0</v></c></row>'
        write_xlsx(path, sheet(cell), strings)
    else:
        cell = f'<row r="5"><c r="C5" t="inlineStr"><is><t>{big}</t></is></c></row>'
        write_xlsx(path, sheet(cell))
    del big
    assert path.stat().st_size < 1 * MIB
    cell_ref = "A5" if where == "shared" else "C5"
    assert_rejected(
        path,
        database_url,
        tmp_path,
        f"sheet 'Contacts', cell {cell_ref}: more than 32,767 characters",
    )


def test_a_zip_bomb_sheet_is_refused_while_inflating(tmp_path, database_url, engine):
    # Cells of nothing but spaces between rows inflate >1000x: refused past 64 MiB by ratio.
    path = tmp_path / "bomb.xlsx"
    padding = " " * (300 * MIB)
    write_xlsx(path, sheet(f"<!--{padding}-->"))
    del padding
    assert_rejected(path, database_url, tmp_path, "a compression bomb, not an export")


def test_a_document_type_declaration_is_refused():
    # Entity expansion ("billion laughs") needs a DTD; spreadsheet programs write none.
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    )
    buffer = io.BytesIO()
    write_xlsx(buffer, laughs + sheet("<row r='5'><c r='A5' t='str'><v>&lol2;</v></c></row>"))
    with pytest.raises(UnreadableFileError, match="document type declaration"):
        open_upload(io.BytesIO(buffer.getvalue()), "laughs.xlsx")


ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def write_ods(path: Path, table_body: str) -> None:
    def row(values: list[str]) -> str:
        cells = "".join(
            f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'
            for v in values
        )
        return f"<table:table-row>{cells}</table:table-row>"

    content = (
        f"<office:document-content {ODS_NS}><office:body><office:spreadsheet>"
        '<table:table table:name="Kontakte">'
        + row(HEADER)
        + "".join(row(v) for v in DATA)
        + table_body
        + "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        book.writestr("content.xml", content)


def test_ods_repeats_are_not_expanded_into_memory(tmp_path, database_url, engine):
    # LibreOffice writes the rest of a sheet as repeated empty rows and columns: a million of
    # each costs nothing; a value repeated a million columns wide is refused by its cell.
    path = tmp_path / "repeats.ods"
    empty = (
        '<table:table-row table:number-rows-repeated="1048000">'
        '<table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
    )
    write_ods(path, empty)
    code, out, err, peak = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 0, err[-2000:]
    assert json.loads(out)["contacts_created"] == 3
    assert peak <= 400
    wide = (
        '<table:table-row><table:table-cell table:number-columns-repeated="1000000" '
        'office:value-type="string"><text:p>x</text:p></table:table-cell></table:table-row>'
    )
    write_ods(path, wide)
    assert_rejected(path, database_url, tmp_path, "sheet 'Kontakte', cell ")


def test_a_legacy_xls_with_a_far_cell_reads_only_the_cells_it_stores(
    tmp_path, database_url, engine
):
    # The last cell a BIFF sheet can hold: a reader that fills the sheet densely takes ~1 GiB.
    book = xlwt.Workbook()
    data = book.add_sheet("Contacts")
    for r, values in enumerate([HEADER, *DATA]):
        for c, value in enumerate(values):
            data.write(r, c, value)
    data.write(65535, 255, "stray")
    path = tmp_path / "far.xls"
    book.save(str(path))
    code, out, err, peak = import_with_peak_rss(path, database_url, tmp_path)
    assert code == 0, err[-2000:]
    summary = json.loads(out)
    assert (summary["status"], summary["contacts_created"]) == ("COMPLETED", 3)
    assert peak <= 400, f"peak RSS {peak:.0f} MiB"


def test_a_legacy_xls_too_large_to_hold_is_refused_by_size():
    content = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * (17 * MIB)
    with pytest.raises(UnreadableFileError, match=r"a legacy \.xls workbook of 17 MiB"):
        open_upload(io.BytesIO(content), "old.xls")
