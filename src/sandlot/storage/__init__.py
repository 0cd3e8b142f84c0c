"""Where exported snapshots (and later templates) are kept: a local directory (the default,
<home>/storage) or a bucket of any S3 API (AWS, MinIO...) through boto3.

    make_backend("s3://bucket/prefix") or make_backend("/a/dir") -> Backend

A backend stores objects by key ("snapshots/<id>/manifest.json", "layers/<hex>.tar.gz"): put a
local file, get one into a local file (at most so many bytes), ask whether a key exists, delete,
list keys by prefix. What is read is whatever its writers put there: the storage may be shared by
hosts that do not trust one another's contents (server/transfer.py checks them).
S3 settings come from boto3's own configuration (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for a server other than AWS's, ~/.aws/config).
"""

from __future__ import annotations

from pathlib import Path

from .._exceptions import InvalidArgument
from .local import LocalBackend

__all__ = ["LocalBackend", "make_backend"]


def make_backend(location: str):
    if location.startswith("s3://"):
        from .s3 import S3Backend  # boto3 is an optional dependency (the `s3` extra)

        bucket, _, prefix = location[len("s3://"):].partition("/")
        if not bucket:
            raise InvalidArgument(f"no bucket in {location!r}")
        return S3Backend(bucket, prefix)
    if location.startswith("file://"):
        location = location[len("file://"):]
    if not location.startswith("/"):
        raise InvalidArgument(f"storage must be an absolute directory or s3://bucket/prefix, not {location!r}")
    return LocalBackend(Path(location))
