"""Files shaped exactly like the exports of the tools people keep contacts in (see
files/exports/manifest.json for each one's source), imported through real runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from ingestion_pipeline.reading import open_upload
from ingestion_pipeline.reading.mapping import OUTLOOK_LOCALIZED, suggest_mapping
from ingestion_pipeline_tests.helpers import import_bytes, rows

EXPORTS = Path(__file__).resolve().parent / "files" / "exports"
ALL_EXPORTS = {e["file"]: e for e in json.loads((EXPORTS / "manifest.json").read_text())}
# The exports that import with no hand edits (a file whose rows need a person says so).
MANIFEST = [
    e
    for e in ALL_EXPORTS.values()
    if e["delimiter"] and e.get("status", "COMPLETED") == "COMPLETED"
]


def export_bytes(name: str) -> bytes:
    return (EXPORTS / name).read_bytes()


def open_issues(engine, job_id: str) -> list[tuple]:
    return rows(
        engine,
        "SELECT i.kind, i.field, i.message, array_agg(ii.row_number ORDER BY 1) FROM issues i "
        "JOIN issue_items ii USING (issue_id) WHERE i.job_id = :j AND NOT i.resolved "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        j=job_id,
    )


def read_export(name: str, content: bytes | None = None):
    """The reader of an export after reading it whole, and every record it staged."""
    source = open_upload(io.BytesIO(export_bytes(name) if content is None else content), name)
    frame = pd.concat([chunk.frame for chunk in source.chunks(1000)], ignore_index=True)
    return source, frame


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
    # A name only the right decoding gives (cp932 has no "ë": a Japanese export has its own).
    names = {c[1] for c in contacts}
    assert export.get("first_name_sample", "Zo\u00eb") in names or "Jos\u00e9" in names


# Google CSV: several values of one field that share a type are joined with " ::: " in one
# cell ("a ::: b"), their types likewise ("* Other ::: Other"); `*` marks the primary one.


def test_google_csv_joined_values_keep_the_primary_one_and_the_others_stay_in_extra(
    engine, instance, resources, local_zone
):
    name = "google_legacy_multivalue.csv"
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", name, export_bytes(name)
    )
    assert result.success, job.error
    assert (job.status, job.total_rows, job.contacts_created) == ("COMPLETED", 4, 4), job
    assert job.mapping["profile"] == "Google Contacts (legacy Google CSV)"
    assert open_issues(engine, job.job_id) == []
    contacts = rows(
        engine,
        "SELECT email, first_name, last_name, company, extra FROM contacts ORDER BY source_row",
    )
    assert [c[:4] for c in contacts] == [
        # The first value: no type marked primary ("* Other ::: Other" marks the first).
        ("ohneLabel@folker.de", "Folker", "Ohnesorg", "Folker Software GmbH"),
        # "Home ::: * Work": the second is the primary address.
        ("jose.nunez@example.org", "José", "Núñez", "Ibérica Renovables S.L."),
        # Two organizations in one cell: the first is the company.
        ("zoe.mueller@example.com", "Zoë", "Müller", "Nordwind Logistik GmbH"),
        ("priya.raman@example.net", "Priya", "Raman", "Example Analytics Ltd"),
    ]
    folker, jose, zoe, priya = (c[4] for c in contacts)
    assert folker["E-mail 1 - Type"] == "* Other"
    assert folker["E-mail 1 - Type (other values)"] == "Other"
    assert folker["E-mail 1 - Value (other values)"] == "ohneLabel2@folker.de"
    # Phones of one type are joined alike: the first one is the cell's, the rest kept.
    assert folker["Phone 1 - Value"] == "0171 2345678"
    assert folker["Phone 1 - Value (other values)"] == "0160 9876543"
    assert jose["E-mail 1 - Value (other values)"] == "jose@casa.example"
    assert jose["E-mail 1 - Type (other values)"] == "Home"
    assert (jose["Phone 2 - Type"], jose["Phone 2 - Value"]) == ("* Mobile", "+34 699 000 111")
    assert jose["Phone 2 - Value (other values)"] == "+34 612 345 678"
    # Labels are a list, not values of one field: kept whole.
    assert jose["Group Membership"] == "* myContacts ::: Customers"
    assert zoe["E-mail 2 - Value"] == "zoe@example.net"
    assert zoe["E-mail 2 - Value (other values)"] == "zoe.m@example.net"
    assert zoe["Organization 1 - Name (other values)"] == "Sächsische Spedition eG"
    assert zoe["Organization 1 - Title"] == "Head of Procurement"
    assert zoe["Organization 1 - Title (other values)"] == "Beirat"
    # An address's parts are split alike, the multi-line formatted one included.
    assert priya["Address 1 - City"] == "London"
    assert priya["Address 1 - City (other values)"] == "Leeds"
    assert priya["Address 1 - Formatted"] == "14 Harbour Street\nLondon E1 6AN\nUnited Kingdom"
    assert priya["Address 1 - Formatted (other values)"] == (
        "5 Elm Road\nLeeds LS1 4AP\nUnited Kingdom"
    )


def test_only_a_google_export_has_its_cells_split(engine, instance, resources, local_zone):
    content = (
        b"email,first_name,last_name,company\n"
        b"ann@acme.io ::: ann@home.io,Ann,Lee,Acme\n"
        b"bob@acme.io,Bob,Ray,Acme\n"
    )
    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "p.csv", content)
    assert result.success, job.error
    assert job.status == "NEEDS_REVIEW"
    assert job.mapping["profile"] is None
    assert open_issues(engine, job.job_id) == [
        (
            "invalid_email",
            "email",
            '"ann@acme.io ::: ann@home.io" is not a valid email address',
            [1],
        )
    ]


# Outlook leaves a record's trailing empty fields out; such a record is padded, not an issue.


def test_outlook_2000_records_missing_their_trailing_empty_fields_are_padded_and_counted(
    engine, instance, resources, local_zone
):
    name = "outlook2000_trailing_fields.csv"
    source, frame = read_export(name)
    assert len(source.format.header) == 90
    assert (source.format.encoding, source.mapping.profile) == ("cp1252", "Outlook")
    assert (source.short_records, source.short_record_rows) == (3, [2, 3, 4])
    assert "record_problem" not in frame
    assert json.loads(frame["extra"][0])["Web Page"] == "http://www.nordwind.example/"

    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", name, export_bytes(name)
    )
    assert result.success, job.error
    assert (job.status, job.total_rows, job.contacts_created) == ("COMPLETED", 4, 4), job
    assert open_issues(engine, job.job_id) == []
    contacts = rows(
        engine,
        "SELECT email, first_name, last_name, company, extra->>'Sensitivity', extra ? 'Web Page' "
        "FROM contacts ORDER BY source_row",
    )
    assert [c[:4] for c in contacts] == [
        ("zoe.mueller@example.com", "Zoë", "Müller", "Nordwind Logistik GmbH"),
        ("jose.nunez@example.org", "José", "Núñez", "Ibérica Renovables S.L."),
        ("priya.raman@example.net", "Priya", "Raman", "Example Analytics Ltd"),
        ("liam.oconnor@example.com", "Liam", "O'Connor", "Contoso, Inc."),
    ]
    # Every record's fields are where the header says, the short ones' as much as the full one's.
    assert [c[4:] for c in contacts] == [("Normal", True)] + [("Normal", False)] * 3


def test_a_record_with_more_fields_than_the_header_is_an_issue_saying_so(
    engine, instance, resources, local_zone
):
    content = export_bytes("outlook2000_trailing_fields.csv")
    fields = ["" for _ in range(90)]
    fields[1], fields[3], fields[5] = "Eve", "Ray", "Globex"
    fields[56] = "eve@globex.example"
    longer = ",".join([*fields, "surplus"]) + "\r\n"
    content += longer.encode("cp1252")
    source, frame = read_export("o.csv", content)
    assert frame["record_problem"].tolist()[-1] == "91/90"
    assert frame["record_problem"].notna().sum() == 1
    assert source.short_records == 3

    result, job = import_bytes(engine, instance, resources, local_zone, "acme", "o.csv", content)
    assert result.success, job.error
    assert (job.status, job.total_rows) == ("NEEDS_REVIEW", 5)
    assert open_issues(engine, job.job_id) == [
        (
            "malformed_record",
            "record",
            "the record has 91 fields where the header has 90; values past the header are "
            "kept in extra as column_N",
            [5],
        )
    ]
    extra = rows(
        engine,
        "SELECT extra FROM staging_rows WHERE job_id = :j AND row_number = 5",
        j=job.job_id,
    )
    assert extra == [({"column_91": "surplus"},)]


# Outlook writes its column names in the installation's language (and, on Japanese Windows,
# in its ANSI code page, cp932).


def test_a_japanese_outlook_export_maps_itself_and_imports(engine, instance, resources, local_zone):
    name = "outlook_ja.csv"
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", name, export_bytes(name)
    )
    assert result.success, job.error
    assert (job.status, job.total_rows, job.contacts_created) == ("COMPLETED", 3, 3), job
    assert job.encoding == "cp932"
    assert job.mapping["profile"] == "Outlook (ja)"
    assert {k: v[0] for k, v in job.mapping["fields"].items()} == {
        "email": "電子メール アドレス",
        "first_name": "名",
        "last_name": "姓",
        "company": "会社名",
    }
    contacts = rows(
        engine,
        "SELECT email, first_name, last_name, company, extra->>'携帯電話' "
        "FROM contacts ORDER BY source_row",
    )
    assert contacts == [
        ("taro.yamada@example.co.jp", "太郎", "山田", "株式会社サンプル商事", "090-1234-5678"),
        ("hanako.sato@example.jp", "花子", "佐藤", "北斗テクノロジー株式会社", "080-2345-6789"),
        ("suzuki@suzuki-print.example.jp", "健一", "鈴木", "有限会社すずき印刷", None),
    ]


def test_a_german_outlook_export_maps_itself_and_imports(engine, instance, resources, local_zone):
    name = "outlook_de.csv"
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", name, export_bytes(name)
    )
    assert result.success, job.error
    assert (job.status, job.contacts_created) == ("COMPLETED", 3), job
    assert job.mapping["profile"] == "Outlook (de)"
    assert job.mapping["fields"]["email"] == [
        "E-Mail-Adresse",
        "E-Mail 2: Adresse",
        "E-Mail 3: Adresse",
    ]
    contacts = rows(
        engine, "SELECT email, first_name, last_name, company FROM contacts ORDER BY source_row"
    )
    assert contacts == [
        ("zoe.mueller@example.com", "Zoë", "Müller", "Nordwind Logistik GmbH"),
        ("joerg.weiss@example.de", "Jörg", "Weiß", "Bäckerei Weiß & Söhne OHG"),
        ("m.oeztuerk@example.org", "Mehmet", "Öztürk", "Rheinland Software AG"),
    ]


@pytest.mark.parametrize(
    ("language", "first", "last", "email", "company"),
    [
        ("de", "Vorname", "Nachname", "E-Mail-Adresse", "Firma"),
        ("fr", "Prénom", "Nom", "Adresse de messagerie", "Société"),
        ("es", "Nombre", "Apellidos", "E-mail Address", "Organización"),
        ("it", "Nome", "Cognome", "Indirizzo posta elettronica", "Società"),
        ("pt-BR", "Primeiro nome", "Sobrenome", "E-mail Address", "Empresa"),
        ("pt-PT", "Primeiro nome", "Apelido", "Endereço de correio electrónico", "Empresa"),
        ("nl", "Voornaam", "Achternaam", "E-mailadres", "Bedrijf"),
        ("ja", "名", "姓", "電子メール アドレス", "会社名"),
    ],
)  # fmt: skip
def test_localized_outlook_headers_are_the_outlook_profile(language, first, last, email, company):
    localized = next(loc for loc in OUTLOOK_LOCALIZED if loc.language == language)
    middle = localized.requires[1]
    # The head of Outlook's header (title, names, suffix, company) and its e-mail columns.
    header = ["Title", first, middle, last, "Suffix", company, "Department", email, "E-mail Type"]
    mapping = suggest_mapping(header, [])
    assert mapping.profile == f"Outlook ({language})"
    assert {k: v[0] for k, v in mapping.fields.items()} == {
        "email": email,
        "first_name": first,
        "last_name": last,
        "company": company,
    }
    assert mapping.unmapped == []


# Apple's Contacts marks a card of a company X-ABShowAs:COMPANY: N is empty, FN is the
# company's name. It is no person's name: first and last name stay blank (both are required,
# so those rows wait for a person), the company comes from ORG.


def test_an_apple_company_card_has_no_person_names_and_its_company_from_org(
    engine, instance, resources, local_zone
):
    name = "apple_addressbook_company.vcf"
    result, job = import_bytes(
        engine, instance, resources, local_zone, "acme", name, export_bytes(name)
    )
    assert result.success, job.error
    assert (job.status, job.total_rows) == ("NEEDS_REVIEW", 3), job
    staged = rows(
        engine,
        "SELECT row_number, email, first_name, last_name, company, status, extra->>'Show As', "
        "extra->>'Full Name', extra->>'URL' FROM staging_rows WHERE job_id = :j ORDER BY 1",
        j=job.job_id,
    )
    zoe, apple, iberica = staged
    assert zoe == (
        1, "zoe.mueller@example.com", "Zoë", "Müller", "Nordwind Logistik GmbH", "READY",
        None, "Zoë Müller", None,
    )  # fmt: skip
    # No person's name from FN ("Apple Computer AG" is not first "Apple Computer", last "AG").
    assert apple == (
        2, None, None, None, "Apple Computer AG", "ISSUE",
        "COMPANY", "Apple Computer AG", "http://www.apple.ch",
    )  # fmt: skip
    assert iberica == (
        3, "info@iberica-renovables.example", None, None, "Ibérica Renovables S.L.", "ISSUE",
        "COMPANY", "Ibérica Renovables S.L.", None,
    )  # fmt: skip
    assert open_issues(engine, job.job_id) == [
        ("missing_field", "email", "email is required but empty", [2]),
        ("missing_field", "first_name", "first_name is required but empty", [2, 3]),
        ("missing_field", "last_name", "last_name is required but empty", [2, 3]),
    ]
