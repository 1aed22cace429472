"""The warehouse as a store of whole objects, addressed by a URI: a local folder or S3.

Everything the loader and the publication need from storage is five operations on keys (``/``
separated paths under the warehouse root): write an object atomically, create one only if it
does not exist, read one, list a prefix, delete one. A local folder does them with rename,
link(2) and fsync; S3-compatible object storage with single PUTs, ``If-None-Match: *`` and
LIST. Nothing else assumes a POSIX file system, so the same code runs on both (DESIGN
section 7).

    open_store("/srv/engagement/warehouse")          LocalStore
    open_store("s3://bucket/warehouse", endpoint=…)  S3Store (credentials: the AWS_* environment)

boto3 is imported only when an ``s3://`` warehouse is opened.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from core.errors import UserError
from core.settings import Settings


class StorageError(UserError):
    """The warehouse cannot be reached or used; the message says which and why."""


class Store(Protocol):
    """A warehouse root; keys are ``/``-separated paths under it."""

    def put(self, key: str, data: bytes) -> None:
        """Write an object whole: a reader sees the old content, the new one, or (new key) none."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists; False (nothing written) when it does. Atomic."""

    def get(self, key: str) -> bytes:
        """An object's content; FileNotFoundError when there is none."""

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder: ``a/b`` lists ``a/b/...``), sorted."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if it exists."""

    def url(self, key: str) -> str:
        """Where ``key`` is, for a person or an engine (a path, or ``s3://bucket/key``)."""


def open_store(uri: str | Path, *, endpoint: str | None = None, region: str = "us-east-1") -> Store:
    """The store at ``uri``: ``s3://bucket[/prefix]`` or a local folder (``file://`` or a path)."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{text!r} names no bucket: use s3://<bucket>/<prefix>")
        return S3Store(parsed.netloc, parsed.path.strip("/"), endpoint=endpoint, region=region)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # "c:" would be a Windows drive, not a scheme
        raise StorageError(f"warehouse {text!r}: unsupported scheme {parsed.scheme!r}; use a folder or s3://bucket/prefix")
    return LocalStore(Path(text))


def as_store(warehouse: Path | Store) -> Store:
    """``warehouse`` as a store: a local folder given as a path, or a store as it is."""
    return LocalStore(warehouse) if isinstance(warehouse, (str, Path)) else warehouse


def warehouse_store(settings: Settings) -> Store:
    """The store of the configured warehouse (``ENGAGEMENT_WAREHOUSE_URI``, by default a folder
    under ``ENGAGEMENT_HOME``)."""
    if settings.warehouse_on_object_storage:
        return open_store(settings.warehouse_uri, endpoint=settings.s3_endpoint, region=settings.s3_region)
    return LocalStore(settings.warehouse)


# --------------------------------------------------------------------------------------------
# A local folder
# --------------------------------------------------------------------------------------------
class LocalStore:
    """A folder on a local (or POSIX network) file system, written durably."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        final = self.path(key)
        tmp = self._write_temporary(final, data)
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        final = self.path(key)
        tmp = self._write_temporary(final, data)
        try:
            # link(2) fails when the name exists, and the content is complete before it appears.
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(final.parent)
        return True

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        out = []
        for directory, _, files in os.walk(base):
            rel = Path(directory).relative_to(self.root).as_posix()
            out += [f"{rel}/{name}" for name in files]
        return sorted(out)

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        # Like an object store, leave no empty folders behind (stop at the first non-empty one).
        for parent in path.parents:
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def url(self, key: str) -> str:
        return str(self.path(key))

    def remove_temporaries(self, prefix: str) -> None:
        """Remove what a crashed writer left half-written under ``prefix`` (``.*.tmp`` files)."""
        for key in self.list(prefix):
            if key.endswith(".tmp"):
                self.delete(key)

    def _write_temporary(self, final: Path, data: bytes) -> Path:
        make_durable_dirs(final.parent)
        # Unique per writer (process and call): two writers never share a temporary.
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        return tmp


def make_durable_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents, and make their entries durable.

    fsync of a file and of its directory is not enough for the first file of a new folder: if
    the folder's own entry in its parent is lost in a power cut, the file goes with it.
    """
    if directory.is_dir():
        return
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    directory.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# S3-compatible object storage
# --------------------------------------------------------------------------------------------
class S3Store:
    """A prefix of an S3 bucket (AWS, or a compatible server at ``endpoint``)."""

    def __init__(self, bucket: str, prefix: str, *, endpoint: str | None = None, region: str = "us-east-1") -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.region,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
            )
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._call("write", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            # 412: the key exists. 409: a concurrent conditional write to the key is in flight;
            # S3 asks to retry, and the retry then sees the winner's object (412).
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412"):
                return False
            if code in ("ConditionalRequestConflict", "409"):
                return self.put_if_absent(key, data)
            raise self._error("create", key, exc) from exc
        except Exception as exc:
            raise self._error("create", key, exc) from exc
        return True

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(self.url(key)) from exc
            raise self._error("read", key, exc) from exc

    def list(self, prefix: str) -> list[str]:
        folder = self._key(prefix).rstrip("/") + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        out = []

        def pages():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                out.extend(item["Key"][strip:] for item in page.get("Contents", ()))

        self._call("list", prefix, pages)
        return sorted(out)

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _call(self, what: str, key: str, action):
        try:
            return action()
        except Exception as exc:
            raise self._error(what, key, exc) from exc

    def _error(self, what: str, key: str, exc: Exception) -> StorageError:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return StorageError(
            f"could not {what} {self.url(key)}{where}: {exc}. Check ENGAGEMENT_WAREHOUSE_URI, "
            "ENGAGEMENT_S3_ENDPOINT and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment"
        )
