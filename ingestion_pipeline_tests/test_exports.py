"""Files shaped exactly like the exports of the tools people keep contacts in (see
files/exports/manifest.json for each one's source), imported through real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingestion_pipeline_tests.helpers import import_bytes, rows

EXPORTS = Path(__file__).resolve().parent / "files" / "exports"
MANIFEST = [e for e in json.loads((EXPORTS / "manifest.json").read_text()) if e["delimiter"]]


@pytest.mark.parametrize("export", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_each_tools_export_imports_with_no_hand_edits(
    engine, instance, resources, local_zone, export
):
    content = (EXPORTS / export["file"]).read_bytes()
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", export["file"], content
    )
    assert result.success, job.error
    assert (job.status, job.total_rows, job.contacts_created) == (
        "COMPLETED",
        export["rows"],
        export["rows"],
    ), job
    mapping = job.mapping["fields"]
    expected = export["columns"]
    for field in ("email", "first_name", "last_name", "company"):
        if expected[field] is not None:
            assert mapping[field][0] == expected[field], (field, mapping)
    layout = job.layout
    assert len(layout["skipped_before_header"]) == export["preamble_nonblank"]
    assert len(layout["footer"]) == export["footer_nonblank"]
    contacts = rows(
        engine,
        "SELECT email, first_name, last_name, company FROM contacts ORDER BY source_row",
    )
    assert all(all(value for value in contact) for contact in contacts), contacts
    assert "Zo\u00eb" in {c[1] for c in contacts} or "Jos\u00e9" in {c[1] for c in contacts}
