"""``object_store``: one real S3-compatible server (SeaweedFS, ``weed mini``) per test session.

    def test_something(object_store):       # an ObjectStoreServer with a bucket "engagement"
        store = open_store("s3://engagement/my-test", endpoint=object_store.endpoint)

The server gets free ports and a temporary folder; the credentials are set in this process's
environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) for boto3, and
``object_store.environment()`` gives them to subprocesses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from engagement.objectstore import ObjectStoreServer

BUCKET = "engagement"


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStoreServer]:
    server = ObjectStoreServer(tmp_path_factory.mktemp("seaweedfs"), access_key="engagement-test", secret_key="s3cret-for-tests")
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update({k: v for k, v in server.environment().items() if k.startswith("AWS_")})
    try:
        import boto3

        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
