"""A storage backend on any S3 API, through boto3 (multipart transfers for large objects)."""

from __future__ import annotations

from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .._exceptions import NotFound, ResourceExhausted, RuntimeFailure


class S3Backend:
    def __init__(self, bucket: str, prefix: str = ""):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.location = f"s3://{bucket}/{self.prefix}"
        self.client = boto3.client("s3")

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, source: Path) -> None:
        try:
            self.client.upload_file(str(source), self.bucket, self._key(key))
        except (BotoCoreError, ClientError) as e:
            raise RuntimeFailure(f"uploading {key} to {self.location} failed: {e}") from e

    def get(self, key: str, dest: Path, max_bytes: int | None = None) -> None:
        """The object into the file `dest`; ResourceExhausted if it is larger than `max_bytes` (its
        size asked first, the file checked after: the object may be replaced in between)."""
        try:
            if max_bytes is not None and self._size(key) > max_bytes:
                raise _too_large(key, self.location, max_bytes)
            self.client.download_file(self.bucket, self._key(key), str(dest))
            if max_bytes is not None and dest.stat().st_size > max_bytes:
                raise _too_large(key, self.location, max_bytes)
        except ClientError as e:
            if _missing(e):
                raise NotFound(f"{key} is not in {self.location}") from None
            raise RuntimeFailure(f"downloading {key} from {self.location} failed: {e}") from e
        except BotoCoreError as e:
            raise RuntimeFailure(f"downloading {key} from {self.location} failed: {e}") from e

    def _size(self, key: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]

    def exists(self, key: str) -> bool:
        try:
            self._size(key)
            return True
        except ClientError as e:
            if _missing(e):
                return False
            raise RuntimeFailure(f"looking up {key} in {self.location} failed: {e}") from e
        except BotoCoreError as e:
            raise RuntimeFailure(f"looking up {key} in {self.location} failed: {e}") from e

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as e:
            raise RuntimeFailure(f"deleting {key} from {self.location} failed: {e}") from e

    def list(self, prefix: str) -> list[str]:
        keys = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                             Prefix=self._key(prefix)):
                keys += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as e:
            raise RuntimeFailure(f"listing {self.location} failed: {e}") from e
        return sorted(keys)


def _missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def _too_large(key: str, location: str, max_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(f"{key} in {location} is larger than {max_bytes} bytes", retry=False)
