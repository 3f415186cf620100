"""The first answer: an upload's response already says what the file's first bytes tell
(format, layout, a row estimate, the mapping and whether a person must confirm it), and the
run then does what it said. Through `ingestion-pipeline serve` as a process, as test_api."""

from __future__ import annotations

import gzip
import io
from pathlib import PurePosixPath

import openpyxl

from ingestion_pipeline_tests.helpers import (
    Client,
    csv_text,
    job,
    new_key,
    run_sensors,
)


def people(count: int) -> list[str]:
    """Records of varied length, as a real export has."""
    return [
        f"{'p' * (1 + i % 7)}{i}@{'acme' if i % 3 else 'globex-industries'}.io,"
        f"{'Ann' if i % 2 else 'Maximilian'},{'Lee' if i % 5 else 'Oberhauser-Schmidt'},"
        f"{'Acme' if i % 4 else 'Acme Holdings International'}"
        for i in range(count)
    ]


def test_a_csv_upload_answers_format_layout_estimate_and_mapping_at_once(
    server, engine, instance, api_resources
):
    acme = Client(server.url, new_key(engine, "acme"))
    content = csv_text(*people(3000))
    assert 64 * 1024 < len(content) < 256 * 1024  # past what the estimate averages over
    answer = acme.upload("contacts.csv", content)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["job_id"] and body["status"] == "PENDING" and body["created"] is True
    first = body["first_answer"]
    assert first["format"] == "csv" and first["compression"] is None
    assert (first["encoding"], first["delimiter"], first["sheet"]) == ("utf-8", "comma", None)
    assert first["header"] == ["email", "first_name", "last_name", "company"]
    assert first["skipped_before_header"] == [] and first["size_bytes"] == len(content)
    assert abs(first["row_estimate"] - 3000) <= 3000 * 0.05, first
    assert "bytes per record" in first["row_estimate_basis"]
    mapping = first["mapping"]
    assert mapping["source"] == "automatic" and mapping["unmapped"] == []
    assert mapping["fields"]["email"] == {"columns": ["email"], "method": "alias"}
    assert {f["method"] for f in mapping["fields"].values()} == {"alias"}
    assert first["needs_mapping"] is False

    # The same bytes again are the same job, with the same answer; gzipped, the same file.
    again = acme.upload("contacts.csv", content)
    assert again.status_code == 200 and again.json()["first_answer"] == first
    packed = acme.upload("contacts.csv.gz", gzip.compress(content)).json()["first_answer"]
    assert (packed["format"], packed["compression"]) == ("csv", "gzip")
    assert abs(packed["row_estimate"] - 3000) <= 3000 * 0.1, packed
    assert packed["mapping"] == mapping

    # A small file is whole in the sample: counted, lines above the header named.
    notes = b"Exported from CRM;;;\nOnly active contacts\n\n" + csv_text(
        "ann@acme.io;Ann;Lee;Acme",
        "bo@acme.io;Bo;Ek;Acme",
        header="E-Mail;Vorname;Nachname;Firma\n",
    )
    small = acme.upload("crm.csv", notes).json()["first_answer"]
    assert (small["delimiter"], small["row_estimate"]) == ("semicolon", 2), small
    assert small["row_estimate_basis"].startswith("counted")
    assert small["skipped_before_header"] == [
        {"line": 1, "text": "Exported from CRM"},
        {"line": 2, "text": "Only active contacts"},
    ]
    assert small["mapping"]["fields"]["first_name"]["columns"] == ["Vorname"]

    run_sensors(instance, api_resources)
    done = job(engine, body["job_id"])
    assert done.status == "COMPLETED" and done.total_rows == 3000
    assert done.mapping["fields"] == {k: v["columns"] for k, v in mapping["fields"].items()}


UNMAPPED_HEADER = "Kontakt;Vorname;Nachname;Client Ref\n"


def test_unmappable_columns_need_a_person_and_a_confirmed_mapping_is_remembered(
    server, engine, instance, api_resources
):
    acme = Client(server.url, new_key(engine, "acme"))
    content = csv_text("ann@acme.io;Ann;Lee;Acme", header=UNMAPPED_HEADER)
    body = acme.upload("crm.csv", content).json()
    first = body["first_answer"]
    assert first["needs_mapping"] is True, first
    assert first["mapping"]["unmapped"] == ["company"]
    assert "company" not in first["mapping"]["fields"]
    assert first["mapping"]["fields"]["email"] == {"columns": ["Kontakt"], "method": "values"}
    assert first["mapping"]["fields"]["first_name"] == {"columns": ["Vorname"], "method": "alias"}
    # The run does what the answer said: it waits for a person.
    run_sensors(instance, api_resources)
    assert job(engine, body["job_id"]).status == "NEEDS_MAPPING"

    fields = {"company": "Client Ref", "email": "Kontakt"}
    confirmed = acme.post(f"/v1/jobs/{body['job_id']}/mapping", json={"fields": fields})
    assert confirmed.status_code == 202, confirmed.text

    # The next file of that header shape maps as the person said, at once.
    later = csv_text("bo@acme.io;Bo;Ek;Globex", "cy@acme.io;Cy;Ho;Initech", header=UNMAPPED_HEADER)
    second = acme.upload("crm-december.csv", later).json()["first_answer"]
    assert second["needs_mapping"] is False, second
    assert second["mapping"]["source"] == "remembered" and second["mapping"]["unmapped"] == []
    assert second["mapping"]["fields"]["company"] == {
        "columns": ["Client Ref"],
        "method": "remembered",
    }
    assert {f["method"] for f in second["mapping"]["fields"].values()} == {"remembered"}
    # Another tenant's file of the same header is asked about afresh.
    globex = Client(server.url, new_key(engine, "globex"))
    theirs = globex.upload("crm.csv", later).json()["first_answer"]
    assert theirs["needs_mapping"] is True and theirs["mapping"]["source"] == "automatic"


def test_a_workbook_upload_names_its_sheet_and_its_stated_rows(server, engine, api_resources):
    book = openpyxl.Workbook()
    book.active.title = "Summary"
    book.active.append(["Quarterly report"])
    sheet = book.create_sheet("Contacts")
    sheet.append(["Contacts export, 2026-11-01"])
    sheet.append(["Email", "First Name", "Last Name", "Company"])
    for i in range(40):
        sheet.append([f"p{i}@acme.io", f"P{i}", "Lee", "Acme"])
    out = io.BytesIO()
    book.save(out)
    acme = Client(server.url, new_key(engine, "acme"))
    answer = acme.upload("people.xlsx", out.getvalue())
    assert answer.status_code == 201, answer.text
    first = answer.json()["first_answer"]
    assert (first["format"], first["sheet"]) == ("xlsx", "Contacts"), first
    assert (first["encoding"], first["delimiter"]) == (None, None)
    assert first["header"] == ["Email", "First Name", "Last Name", "Company"]
    assert first["skipped_before_header"] == [{"line": 1, "text": "Contacts export, 2026-11-01"}]
    assert first["row_estimate"] == 40, first
    assert first["mapping"]["profile"] is None and first["needs_mapping"] is False


def test_an_unreadable_file_is_still_uploaded_and_its_answer_is_the_error(
    server, engine, instance, api_resources
):
    acme = Client(server.url, new_key(engine, "acme"))
    answer = acme.upload("broken.xlsx", b"PK\x03\x04 not a zip at all")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["job_id"] and body["status"] == "PENDING"
    assert list(body["first_answer"]) == ["error"]
    stored = PurePosixPath(body["file"]).name  # broken.<sha256[:12]>.xlsx
    assert body["first_answer"]["error"].startswith(f"{stored}: not a readable workbook")
    # The run fails with the same message.
    run_sensors(instance, api_resources)
    failed = job(engine, body["job_id"])
    assert failed.status == "FAILED" and failed.error == body["first_answer"]["error"]

    no_email = acme.upload("names.csv", b"Name,City\nAnn,Berlin\n").json()
    stored = PurePosixPath(no_email["file"]).name
    assert no_email["first_answer"] == {
        "error": f"{stored}: no email column found; the header has: Name, City"
    }


def test_a_completed_resumable_session_carries_the_first_answer(server, engine, api_resources):
    acme = Client(server.url, new_key(engine, "acme"))
    content = csv_text(*people(2500)).replace(b",", b"\t")
    session = acme.post(
        "/v1/upload-sessions", json={"file_name": "big.tsv", "size": len(content)}
    ).json()
    part = session["part_size"]
    for number, start in enumerate(range(0, len(content), part), start=1):
        sent = acme.put(f"{session['url']}/parts/{number}", content=content[start : start + part])
        assert sent.status_code == 200, sent.text
    done = acme.post(f"{session['url']}/complete")
    assert done.status_code == 201, done.text
    first = done.json()["first_answer"]
    assert (first["format"], first["delimiter"]) == ("tsv", "tab"), first
    assert abs(first["row_estimate"] - 2500) <= 2500 * 0.05, first
    assert first["needs_mapping"] is False
    again = acme.post(f"{session['url']}/complete")
    assert again.status_code == 200 and again.json()["first_answer"] == first
