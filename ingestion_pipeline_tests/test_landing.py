"""The landing zone: key layout, job ids, and the same interface over a folder and over S3."""

from __future__ import annotations

import io

import pytest

from ingestion_pipeline.landing import (
    InvalidKeyError,
    LandingZone,
    LocalLandingZone,
    ObjectChangedError,
    job_id_for,
    parse_upload_key,
    put_file,
)
from ingestion_pipeline.resources import open_landing_zone


def test_upload_keys_that_fit_the_layout():
    parsed = parse_upload_key("uploads/acme-eu_2/Contacts Q3.CSV")
    assert (parsed.tenant_id, parsed.file_name) == ("acme-eu_2", "Contacts Q3.CSV")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("uploads/../b/x.csv", "does not fit"),
        ("uploads/../x.csv", "not a slug"),
        ("uploads/acme/../x.csv", "does not fit"),
        ("uploads/Acme/x.csv", "not a slug"),
        ("uploads/acme;drop table/x.csv", "not a slug"),
        ("uploads/acme/x.pdf", "unsupported extension"),
        ("uploads/acme/", "does not fit"),
        ("uploads/acme/sub/x.csv", "does not fit"),
        ("uploads/acme/.hidden.csv", "not allowed"),
        ("reviews/acme/x.csv", "is not under uploads/"),
        ("uploads/x.csv", "does not fit"),
    ],
)
def test_keys_outside_the_layout_are_refused_with_a_reason(key, reason):
    with pytest.raises(InvalidKeyError, match=reason):
        parse_upload_key(key)


def test_job_ids_are_readable_stable_and_change_with_the_version():
    a = job_id_for("acme", "uploads/acme/Contacts Q3.csv", "etag1")
    assert a == job_id_for("acme", "uploads/acme/Contacts Q3.csv", "etag1")
    assert a.startswith("acme-contacts-q3-")
    assert a != job_id_for("acme", "uploads/acme/Contacts Q3.csv", "etag2")


@pytest.fixture(params=["local", "s3"])
def zone(request, tmp_path) -> LandingZone:
    if request.param == "local":
        return LocalLandingZone(tmp_path / "landing")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return open_landing_zone(f"s3://{bucket}/some/prefix", endpoint, "us-east-1")


def test_write_list_stat_and_open_a_version(zone: LandingZone):
    info = zone.write("uploads/acme/a.csv", b"email\n")
    zone.write("uploads/beta/b.csv", io.BytesIO(b"email\nx\n"))
    listed = {o.key: o for o in zone.list("uploads/")}
    assert set(listed) == {"uploads/acme/a.csv", "uploads/beta/b.csv"}
    assert listed["uploads/acme/a.csv"].etag == info.etag
    assert listed["uploads/beta/b.csv"].size == 8
    assert zone.stat("uploads/acme/missing.csv") is None
    with zone.open("uploads/acme/a.csv", info.etag) as stream:
        assert stream.read() == b"email\n"


def test_opening_an_overwritten_version_is_refused(zone: LandingZone):
    old = zone.write("uploads/acme/a.csv", b"email\nold\n")
    new = zone.write("uploads/acme/a.csv", b"email\nnewer\n")
    assert new.etag != old.etag
    with pytest.raises(ObjectChangedError, match="changed since it was uploaded"):
        zone.open("uploads/acme/a.csv", old.etag).read()


def test_put_file_keeps_an_identical_object_and_its_version(zone: LandingZone, tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"email,first_name\nx@y.io,X\n")
    first = put_file(zone, "uploads/acme/a.csv", path)
    assert put_file(zone, "uploads/acme/a.csv", path).etag == first.etag
    path.write_bytes(b"email,first_name\nx@y.io,Y\n")
    assert put_file(zone, "uploads/acme/a.csv", path).etag != first.etag


def test_local_zone_refuses_keys_that_escape_its_folder(tmp_path):
    zone = LocalLandingZone(tmp_path / "landing")
    with pytest.raises(InvalidKeyError, match="outside the landing zone"):
        zone.write("../escape.csv", b"x")
    assert not (tmp_path / "escape.csv").exists()


def test_identical_content_keeps_its_version_and_changed_content_gets_a_new_one(
    zone: LandingZone,
):
    first = zone.write("uploads/acme/a.csv", b"email\nx@y.io\n")
    assert zone.write("uploads/acme/a.csv", b"email\nx@y.io\n").etag == first.etag
    assert zone.write("uploads/acme/a.csv", b"email\nz@y.io\n").etag != first.etag
