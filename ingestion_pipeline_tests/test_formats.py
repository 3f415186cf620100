"""Uploads from CRMs and APIs: NDJSON, JSON arrays, gzip, header aliases, extra fields kept."""

from __future__ import annotations

import csv
import gzip
import io
import json
import unicodedata

import pandas as pd
import pytest

from ingestion_pipeline.reading import UnreadableFileError, jsonl, open_upload
from ingestion_pipeline.reading.mapping import canonical_field
from ingestion_pipeline_tests.helpers import rows

PEOPLE = [
    {
        "email": f"person{i}@example.org",
        "first_name": ["Zoë", "José", "Łukasz", "Ann"][i % 4],
        "last_name": f"Müller-{i}",
        "company": ["Acme", "Globex GmbH", "株式会社サンプル"][i % 3],
        "phone": f"+49 30 {1000 + i}",
        "city": ["Berlin", "São Paulo"][i % 2],
    }
    for i in range(50)
]
ALIASES = {
    "email": "E-mail Address",
    "first_name": "Given name",
    "last_name": "Surname",
    "company": "Organization",
}


def read(data: bytes, name: str, chunk_size: int = 1000) -> pd.DataFrame:
    source = open_upload(io.BytesIO(data), name)
    return pd.concat([c.frame for c in source.chunks(chunk_size)], ignore_index=True)


def as_csv(people: list[dict], header: dict[str, str] | None = None) -> bytes:
    header = header or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([header.get(k, k) for k in people[0]])
    writer.writerows(p.values() for p in people)
    return buffer.getvalue().encode()


def as_ndjson(people: list[dict]) -> bytes:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in people).encode()


@pytest.mark.parametrize(
    ("alias", "field"),
    [
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("e_mail", "email"),
        ("First Name", "first_name"),
        ("Given name", "first_name"),
        ("Surname", "last_name"),
        ("Last name", "last_name"),
        ("LAST_NAME", "last_name"),
        ("Company name", "company"),
        ("Organization", "company"),
        ("Organisation", "company"),
        ("Notes", None),
    ],
)
def test_header_aliases_ignore_case_spaces_and_punctuation(alias, field):
    assert canonical_field(alias) == field


def test_ndjson_with_aliases_nested_values_and_a_malformed_line():
    data = (
        b'{"E-mail": "a@b.io", "Given name": "Ann", "Surname": "Lee", "Organization": "Acme",'
        b' "tags": ["vip", "eu"], "score": 7}\n'
        b"\n"
        b'{"email": "c@d.io", "first_name": "Cy" \n'
        b'["not", "an", "object"]\n'
        b'{"email": "e@f.io", "first_name": "Eve", "last_name": "Ray", "company": "Co"}\n'
    )
    frame = read(data, "crm.ndjson")
    assert frame["row_number"].tolist() == [1, 2, 3, 4]
    assert frame.loc[0, ["email", "first_name", "last_name", "company"]].tolist() == [
        "a@b.io",
        "Ann",
        "Lee",
        "Acme",
    ]
    assert json.loads(frame.loc[0, "extra"]) == {"tags": ["vip", "eu"], "score": 7}
    assert frame["parse_error"].notna().tolist() == [False, True, True, False]
    assert json.loads(frame.loc[1, "extra"]) == {"_raw": '{"email": "c@d.io", "first_name": "Cy" '}


def test_json_array_is_streamed_across_read_boundaries(monkeypatch):
    monkeypatch.setattr(jsonl, "_READ_CHARS", 7)  # every record spans several reads
    data = json.dumps(PEOPLE, ensure_ascii=False, indent=2).encode()
    frame = read(data, "export.json", chunk_size=16)
    assert len(frame) == 50
    assert frame["email"].tolist() == [p["email"] for p in PEOPLE]
    assert json.loads(frame.loc[3, "extra"]) == {"phone": "+49 30 1003", "city": "São Paulo"}
    assert frame["parse_error"].isna().all()


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"hello, this is text", "x.json", "x.json: this is not JSON"),
        (b'[{"email": "a@b.io"}, {"email": ', "cut.json", "cut.json, record 2: invalid JSON"),
        (b'[{"email": "a@b.io"}, {"mail": "c@d.io"} ', "open.json", "open.json, record 3:"),
        (b'[{"name": "Ann"}]', "keys.json", "keys.json: no email field found"),
    ],
)
def test_files_that_are_not_usable_json_are_rejected_by_name(data, name, message):
    with pytest.raises(UnreadableFileError) as caught:
        read(data, name)
    assert str(caught.value).startswith(message)


def test_gzipped_csv_and_ndjson_read_like_the_plain_files():
    plain = read(as_csv(PEOPLE), "people.csv")
    packed = gzip.compress(as_csv(PEOPLE))
    source = open_upload(io.BytesIO(packed), "people.csv.gz")
    chunks = list(source.chunks(20))
    assert pd.concat([c.frame for c in chunks], ignore_index=True).equals(plain)
    assert chunks[-1].bytes_read == len(packed)  # progress counts the stored (compressed) bytes
    ndjson = read(gzip.compress(as_ndjson(PEOPLE)), "people.ndjson.gz")
    assert ndjson["email"].tolist() == plain["email"].tolist()


def import_json(cli, path, tenant: str) -> tuple[int, dict]:
    code, out, _ = cli("import", str(path), "--tenant", tenant, "--json")
    return code, json.loads(out)


def test_the_same_fifty_people_in_four_formats_become_fifty_contacts_each(cli, tmp_path, engine):
    uploads = {
        "ndjson": ("people.ndjson", as_ndjson(PEOPLE)),
        "array": ("people.json", json.dumps(PEOPLE, ensure_ascii=False).encode()),
        "gzip": ("people.csv.gz", gzip.compress(as_csv(PEOPLE))),
        "aliases": ("people.csv", as_csv(PEOPLE, ALIASES)),
    }
    for tenant, (name, content) in uploads.items():
        path = tmp_path / name
        path.write_bytes(content)
        code, summary = import_json(cli, path, tenant)
        assert code == 0, summary
        assert (summary["status"], summary["contacts_created"]) == ("COMPLETED", 50), tenant
    stored = rows(
        engine,
        "SELECT tenant_id, email, first_name, company, extra FROM contacts "
        "WHERE email = 'person3@example.org' ORDER BY tenant_id",
    )
    assert rows(
        engine,
        "SELECT DISTINCT first_name, company FROM contacts WHERE email = 'person2@example.org'",
    ) == [("Łukasz", "株式会社サンプル")]
    assert [r[0] for r in stored] == ["aliases", "array", "gzip", "ndjson"]
    assert {(r[1], r[2], r[3]) for r in stored} == {("person3@example.org", "Ann", "Acme")}
    assert all(r[4] == {"phone": "+49 30 1003", "city": "São Paulo"} for r in stored)
    assert rows(engine, "SELECT tenant_id, count(*) FROM contacts GROUP BY 1 ORDER BY 1") == [
        ("aliases", 50),
        ("array", 50),
        ("gzip", 50),
        ("ndjson", 50),
    ]


def test_a_malformed_ndjson_record_is_an_issue_and_its_text_is_kept(cli, tmp_path, engine):
    path = tmp_path / "crm.ndjson"
    path.write_bytes(as_ndjson(PEOPLE[:2]) + b'{"email": broken\n')
    code, summary = import_json(cli, path, "acme")
    assert code == 0
    assert summary["status"] == "NEEDS_REVIEW"
    assert [(i["kind"], i["rows"]) for i in summary["issues"]] == [("malformed_record", [3])]
    assert rows(engine, "SELECT extra->>'_raw' FROM staging_rows WHERE row_number = 3") == [
        ('{"email": broken',)
    ]


def test_names_are_stored_in_unicode_nfc(cli, tmp_path, engine):
    decomposed = unicodedata.normalize("NFD", "José Müller")
    first, last = decomposed.split(" ")
    path = tmp_path / "nfd.csv"
    path.write_bytes(f"email,first_name,last_name,company\nj@x.io,{first},{last},Acme\n".encode())
    import_json(cli, path, "acme")
    assert rows(engine, "SELECT first_name, last_name FROM contacts") == [("José", "Müller")]
