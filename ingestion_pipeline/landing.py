"""The landing zone: a local folder or an S3 bucket behind one small interface.

Plain Python (no Dagster import) so the CLI, sensors and tests share it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO, ClassVar, Protocol

from ingestion_pipeline.constants import (
    COMPRESSED_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    UPLOADS_PREFIX,
)
from ingestion_pipeline.datasets import DATASETS, DEFAULT_DATASET, LOAD_ORDER

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class ObjectInfo:
    """One object in the landing zone: key, version tag (ETag), size and modification time."""

    key: str
    etag: str
    size: int
    last_modified: datetime


class ObjectChangedError(RuntimeError):
    """The object at a key is no longer the version an import job was created for."""


class LandingZone(Protocol):
    """What the pipeline needs from where files arrive."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def open(self, key: str, etag: str | None = None) -> BinaryIO: ...

    def write(self, key: str, data: bytes | BinaryIO) -> ObjectInfo: ...

    def describe(self, key: str) -> str: ...

    def delete(self, key: str) -> None: ...

    def start_upload(self, key: str) -> str: ...

    def put_part(self, key: str, upload_id: str, number: int, data: BinaryIO) -> str: ...

    def complete_upload(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo: ...

    def abort_upload(self, key: str, upload_id: str) -> None: ...


@dataclass(frozen=True)
class UploadKey:
    """A key under uploads/ that fits uploads/<tenant>/<file name> (contacts) or
    uploads/<tenant>/<dataset>/<file name>."""

    key: str
    tenant_id: str
    file_name: str
    dataset: str = DEFAULT_DATASET


class InvalidKeyError(ValueError):
    """A key outside the layout; the message says why it is skipped."""


def parse_upload_key(key: str) -> UploadKey:
    """Check `key` against uploads/<tenant>/[<dataset>/]<file name> and return its parts.

    The dataset is said by the folder only, never guessed from the file name: a tenant's
    `customers.csv` dropped beside its other contacts exports stays a contacts upload.
    """
    if not key.startswith(UPLOADS_PREFIX):
        raise InvalidKeyError(f"{key!r} is not under {UPLOADS_PREFIX}")
    rest = key[len(UPLOADS_PREFIX) :]
    parts = rest.split("/")
    dataset = DEFAULT_DATASET
    if len(parts) == 3 and parts[2] and parts[1] in DATASETS:
        dataset = parts.pop(1)
    if len(parts) != 2 or not parts[1]:
        raise InvalidKeyError(
            f"{key!r} does not fit uploads/<tenant>/<file name> or "
            f"uploads/<tenant>/<dataset>/<file name> (datasets: {', '.join(LOAD_ORDER)})"
        )
    tenant, name = parts
    if not TENANT_PATTERN.match(tenant):
        raise InvalidKeyError(
            f"{key!r}: tenant id {tenant!r} is not a slug (a-z, 0-9, '-', '_', at most 63)"
        )
    if name in (".", "..") or name.startswith(".") or "\\" in name or "\x00" in name:
        raise InvalidKeyError(f"{key!r}: file name {name!r} is not allowed")
    path = PurePosixPath(name.lower())
    if path.suffix in COMPRESSED_EXTENSIONS:
        path = path.with_suffix("")
    if path.suffix not in SUPPORTED_EXTENSIONS:
        raise InvalidKeyError(
            f"{key!r}: unsupported extension (supported: {', '.join(SUPPORTED_EXTENSIONS)}, "
            "each optionally .gz)"
        )
    return UploadKey(key=key, tenant_id=tenant, file_name=name, dataset=dataset)


def upload_key(tenant_id: str, file_name: str, dataset: str = DEFAULT_DATASET) -> str:
    """The landing-zone key for a tenant's file of `dataset`, validated (contacts keep
    uploads/<tenant>/<file>)."""
    folder = "" if dataset == DEFAULT_DATASET else f"{dataset}/"
    return parse_upload_key(f"{UPLOADS_PREFIX}{tenant_id}/{folder}{file_name}").key


def job_id_for(tenant_id: str, key: str, etag: str) -> str:
    """A readable, stable partition key for one object version: tenant, file stem, short hash."""
    stem = re.sub(r"[^a-z0-9]+", "-", PurePosixPath(key).stem.lower()).strip("-")[:40] or "file"
    digest = hashlib.sha1(f"{key}\n{etag}".encode()).hexdigest()[:10]
    return f"{tenant_id}-{stem}-{digest}"


class LocalLandingZone:
    """A folder laid out like the bucket; the ETag is the MD5 of the content, as S3's is."""

    # (path, size, mtime_ns) -> md5: a file is hashed once per version per process.
    _digests: ClassVar[dict[tuple[str, int, int], str]] = {}

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise InvalidKeyError(f"{key!r} points outside the landing zone")
        return path

    def _info(self, key: str, path: Path, stat: os.stat_result) -> ObjectInfo:
        version = (str(path), stat.st_size, stat.st_mtime_ns)
        digest = self._digests.get(version)
        if digest is None:
            with path.open("rb") as handle:
                digest = _md5_of(handle)
            self._digests[version] = digest
        return ObjectInfo(
            key=key,
            etag=digest,
            size=stat.st_size,
            last_modified=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                try:
                    yield self._info(key, path, path.stat())
                except FileNotFoundError:
                    continue

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            return self._info(key, path, path.stat())
        except FileNotFoundError:
            return None

    def open(self, key: str, etag: str | None = None) -> BinaryIO:
        path = self._path(key)
        handle = path.open("rb")
        if etag is not None and self._info(key, path, os.fstat(handle.fileno())).etag != etag:
            handle.close()
            raise ObjectChangedError(f"{key} changed since it was uploaded (version {etag})")
        return handle

    def write(self, key: str, data: bytes | BinaryIO) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        with tmp.open("wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:
                shutil.copyfileobj(data, out, 1024 * 1024)
        tmp.replace(path)
        info = self.stat(key)
        assert info is not None
        return info

    def describe(self, key: str) -> str:
        return str(self.root / key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    # Resumable uploads: parts wait in a hidden folder outside uploads/ until the last one is
    # in, then become the object in one rename, so the sensor never sees half a file.
    def _parts(self, upload_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]{8,64}", upload_id):
            raise InvalidKeyError(f"{upload_id!r} is not an upload id")
        return self.root / ".uploads" / upload_id

    def start_upload(self, key: str) -> str:
        self._path(key)
        upload_id = hashlib.sha1(os.urandom(16)).hexdigest()
        self._parts(upload_id).mkdir(parents=True)
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, data: BinaryIO) -> str:
        folder = self._parts(upload_id)
        if not folder.is_dir():
            raise FileNotFoundError(f"no upload {upload_id}")
        tmp = folder / f".{number}.part"
        digest = hashlib.md5()
        with tmp.open("wb") as out:
            for block in iter(lambda: data.read(1024 * 1024), b""):
                digest.update(block)
                out.write(block)
        tmp.replace(folder / str(number))
        return digest.hexdigest()

    def complete_upload(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> ObjectInfo:
        folder = self._parts(upload_id)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        with tmp.open("wb") as out:
            for number, _ in sorted(parts):
                with (folder / str(number)).open("rb") as part:
                    shutil.copyfileobj(part, out, 1024 * 1024)
        tmp.replace(path)
        shutil.rmtree(folder, ignore_errors=True)
        info = self.stat(key)
        assert info is not None
        return info

    def abort_upload(self, key: str, upload_id: str) -> None:
        shutil.rmtree(self._parts(upload_id), ignore_errors=True)


class S3LandingZone:
    """A bucket (and optional prefix) through boto3; works with any S3 API via endpoint_url."""

    def __init__(self, bucket: str, prefix: str, client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client

    def _full(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"][len(self.prefix) :],
                    etag=obj["ETag"].strip('"'),
                    size=obj["Size"],
                    last_modified=obj["LastModified"],
                )

    def stat(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(
            key=key,
            etag=head["ETag"].strip('"'),
            size=head["ContentLength"],
            last_modified=head["LastModified"],
        )

    def open(self, key: str, etag: str | None = None) -> BinaryIO:
        from botocore.exceptions import ClientError

        kwargs = {"Bucket": self.bucket, "Key": self._full(key)}
        if etag is not None:
            kwargs["IfMatch"] = f'"{etag}"'
        try:
            return self.client.get_object(**kwargs)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise ObjectChangedError(
                    f"{key} changed since it was uploaded (version {etag})"
                ) from exc
            raise

    def write(self, key: str, data: bytes | BinaryIO) -> ObjectInfo:
        if isinstance(data, bytes):
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)
        else:
            self.client.upload_fileobj(data, self.bucket, self._full(key))
        info = self.stat(key)
        assert info is not None
        return info

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    # Resumable uploads are S3 multipart uploads: the object appears only when completed, and
    # its ETag is then not the MD5 of its bytes (the service hashes the bytes itself).
    def start_upload(self, key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=self._full(key))[
            "UploadId"
        ]

    def put_part(self, key: str, upload_id: str, number: int, data: BinaryIO) -> str:
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=self._full(key),
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return answer["ETag"].strip('"')

    def complete_upload(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> ObjectInfo:
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self._full(key),
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": f'"{etag}"'} for n, etag in sorted(parts)]
            },
        )
        info = self.stat(key)
        assert info is not None
        return info

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self._full(key), UploadId=upload_id
        )


def _md5_of(stream: BinaryIO) -> str:
    digest = hashlib.md5()
    for block in iter(lambda: stream.read(1024 * 1024), b""):
        digest.update(block)
    return digest.hexdigest()


def put_file(zone: LandingZone, key: str, path: Path) -> ObjectInfo:
    """Upload `path` to `key` unless the same bytes are already there.

    Keeping an identical object untouched keeps its version, so importing the same file again
    finds the same job instead of creating a new one.
    """
    existing = zone.stat(key)
    if existing is not None and existing.size == path.stat().st_size:
        with path.open("rb") as local:
            local_md5 = _md5_of(local)
        if existing.etag == local_md5:
            return existing
        with zone.open(key) as remote:
            if _md5_of(remote) == local_md5:
                return existing
    with path.open("rb") as data:
        return zone.write(key, data)
