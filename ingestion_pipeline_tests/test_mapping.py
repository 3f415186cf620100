"""Column mapping as a step a person completes once: NEEDS_MAPPING, `map`, mapping.json and
the sensor, a mapping remembered per tenant and header, and one behaviour for every format."""

from __future__ import annotations

import json
import unicodedata

from ingestion_pipeline.reading.mapping import split_full_name, suggest_mapping
from ingestion_pipeline.review_files import mapping_key
from ingestion_pipeline.sensors import review_sensor
from ingestion_pipeline_tests.helpers import (
    import_bytes,
    job,
    launch,
    register_upload,
    rows,
    run_job,
    sensor_tick,
)

# A CRM export whose column names say nothing the matcher knows: the email is found by its
# values, the rest has to be confirmed by a person.
UNKNOWN = (
    b"Kontakt;Person;Arbeitgeber;Notiz\n"
    b"ann@acme.io;Ann Lee;Acme;met at fair\n"
    b"bob@acme.io;Ray, Bob;Acme;\n"
    b"cy@acme.io;Mary Ann Day;Acme;vip\n"
)


def test_suggestions_use_profiles_aliases_header_words_and_values():
    google = suggest_mapping(
        ["First Name", "Last Name", "E-mail 1 - Label", "E-mail 1 - Value", "Organization Name"],
        [],
    )
    assert google.profile == "Google Contacts"
    assert google.fields["email"] == ["E-mail 1 - Value"]
    words = suggest_mapping(["Work E-mail Address", "Given name (official)", "Surname"], [])
    assert words.fields["email"] == ["Work E-mail Address"]
    assert words.methods["email"] == "name"
    values = suggest_mapping(["Kontakt", "Person"], [["ann@acme.io", "Ann"], ["", "Bob"]])
    assert (values.fields["email"], values.methods["email"]) == (["Kontakt"], "values")
    assert values.unmapped == ["first_name", "last_name", "company"]


def test_full_names_split_by_a_documented_rule():
    assert split_full_name("Ann Lee") == ("Ann", "Lee")
    assert split_full_name("  Mary  Ann   Day ") == ("Mary Ann", "Day")
    assert split_full_name("Ray, Bob") == ("Bob", "Ray")
    assert split_full_name("Cher") == ("Cher", None)
    assert split_full_name("   ") == (None, None)


def test_needs_mapping_then_map_through_the_cli_then_the_same_shape_maps_itself(
    cli, tmp_path, engine
):
    path = tmp_path / "crm.csv"
    path.write_bytes(UNKNOWN)
    code, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    assert code == 0
    waiting = json.loads(out)
    assert waiting["status"] == "NEEDS_MAPPING"
    assert waiting["header"] == ["Kontakt", "Person", "Arbeitgeber", "Notiz"]
    assert waiting["samples"]["Person"] == ["Ann Lee", "Ray, Bob", "Mary Ann Day"]
    assert waiting["suggested_mapping"] == {"email": ["Kontakt"]}
    assert waiting["unmapped"] == ["first_name", "last_name", "company"]
    assert rows(engine, "SELECT count(*) FROM staging_rows") == [(0,)]

    code, out, err = cli("map", waiting["job_id"], "full_name=Person", "company=Arbeitgeber")
    assert code == 0, err
    assert "COMPLETED" in out
    assert rows(
        engine, "SELECT first_name, last_name, company, extra FROM contacts ORDER BY source_row"
    ) == [
        ("Ann", "Lee", "Acme", {"Person": "Ann Lee", "Notiz": "met at fair"}),
        ("Bob", "Ray", "Acme", {"Person": "Ray, Bob"}),
        ("Mary Ann", "Day", "Acme", {"Person": "Mary Ann Day", "Notiz": "vip"}),
    ]
    used = job(engine, waiting["job_id"]).mapping
    assert used["methods"] == {"email": "values", "full_name": "person", "company": "person"}

    # The next export of the same shape, from the same tenant, maps itself.
    second = tmp_path / "crm-2.csv"
    second.write_bytes(UNKNOWN.replace(b"ann@", b"anne@").replace(b"bob@", b"rob@").replace(
        b"cy@", b"cyd@"))  # fmt: skip
    code, out, _ = cli("import", str(second), "--tenant", "acme", "--json")
    again = json.loads(out)
    assert (code, again["status"], again["contacts_created"]) == (0, "COMPLETED", 3)
    assert job(engine, again["job_id"]).mapping["source"] == "remembered"

    # Another tenant's file of that shape is not mapped by acme's choice.
    code, out, _ = cli("import", str(path), "--tenant", "globex", "--json")
    assert (code, json.loads(out)["status"]) == (0, "NEEDS_MAPPING")


def test_map_refuses_unknown_fields_and_columns_and_changes_nothing(cli, tmp_path, engine):
    path = tmp_path / "crm.csv"
    path.write_bytes(UNKNOWN)
    _, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    job_id = json.loads(out)["job_id"]
    code, _, err = cli("map", job_id, "company=Employer")
    assert code == 1
    assert "no column 'Employer' in the header" in err
    code, _, err = cli("map", job_id, "phone=Notiz")
    assert code == 1 and "unknown field 'phone'" in err
    code, _, err = cli("map", job_id, "--tenant", "globex", "company=Arbeitgeber")
    assert code == 1 and "no import job" in err
    assert job(engine, job_id).status == "NEEDS_MAPPING"
    assert rows(engine, "SELECT count(*) FROM column_mappings") == [(0,)]


def test_mapping_file_picked_up_by_the_sensor_continues_the_job(
    engine, instance, resources, local_zone
):
    result, waiting = import_bytes(
        engine, instance, resources, local_zone, "acme", "crm.csv", UNKNOWN
    )
    assert result.success and waiting.status == "NEEDS_MAPPING"
    # The run stops after raw_upload: nothing downstream is materialized.
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == set()
    job_id = waiting.job_id

    bad = json.dumps({"email": "Kontakt", "company": "Employer"}).encode()
    local_zone.write(mapping_key(job_id), bad)
    data = sensor_tick(review_sensor, instance, resources)
    [failed] = launch(data, "import_job", instance, resources)
    assert not failed.success
    row = job(engine, job_id)
    assert row.status == "NEEDS_MAPPING"
    assert row.error.startswith(f"{mapping_key(job_id)}: no column 'Employer' in the header")

    good = {"email": "Kontakt", "full_name": "Person", "company": "Arbeitgeber"}
    local_zone.write(mapping_key(job_id), json.dumps(good).encode())
    data = sensor_tick(review_sensor, instance, resources, data.cursor)
    assert [r.job_name for r in data.run_requests] == ["import_job"]
    [done] = launch(data, "import_job", instance, resources)
    assert done.success
    row = job(engine, job_id)
    assert (row.status, row.contacts_created, row.error) == ("COMPLETED", 3, None)
    assert row.mapping["source"] == "mapping file"


def test_json_and_csv_missing_a_required_field_behave_alike(
    engine, instance, resources, local_zone
):
    records = [{"email": "ann@acme.io", "first_name": "Ann", "company": "Acme"}]
    as_json = "\n".join(json.dumps(r) for r in records).encode()
    as_csv = b"email,first_name,company\nann@acme.io,Ann,Acme\n"
    for name, content in (("p.ndjson", as_json), ("p.csv", as_csv)):
        result, row = import_bytes(engine, instance, resources, local_zone, "acme", name, content)
        assert result.success
        assert row.status == "NEEDS_MAPPING", name
        assert row.mapping["pending"] is True


def test_a_person_may_leave_a_required_field_empty_and_rows_then_have_issues(cli, tmp_path, engine):
    path = tmp_path / "p.csv"
    path.write_bytes(b"email,first_name,last_name\nann@acme.io,Ann,Lee\n")
    _, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    job_id = json.loads(out)["job_id"]
    code, out, _ = cli("map", job_id, "company=", "--json")
    summary = json.loads(out)
    assert (code, summary["status"]) == (0, "NEEDS_REVIEW")
    assert [(i["kind"], i["field"]) for i in summary["issues"]] == [("missing_field", "company")]


def test_a_reviewers_fix_is_normalized_like_uploaded_values(cli, tmp_path, engine):
    path = tmp_path / "p.csv"
    path.write_bytes(b"email,first_name,last_name,company\nann@acme.io,Ann,,Acme\n")
    _, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    job_id = json.loads(out)["job_id"]
    decomposed = unicodedata.normalize("NFD", "  Bront\u00eb ")
    assert cli("fix", job_id, "1", f"last_name={decomposed}")[0] == 0
    assert cli("reprocess", job_id)[0] == 0
    assert rows(engine, "SELECT last_name FROM contacts") == [("Bront\u00eb",)]


def test_registered_job_can_be_mapped_before_it_runs(engine, instance, resources, local_zone):
    job_id = register_upload(engine, local_zone, "acme", "crm.csv", UNKNOWN)
    from ingestion_pipeline.importer import confirm_mapping

    confirm_mapping(
        engine,
        local_zone,
        job(engine, job_id),
        {"full_name": ["Person"], "company": ["Arbeitgeber"]},
    )
    assert run_job(instance, resources, job_id, "acme").success
    assert job(engine, job_id).status == "COMPLETED"
