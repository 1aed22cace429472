"""Spark on S3-compatible object storage: the s3a file system's jars and settings.

pyspark ships Hadoop's client but not its S3 connector. ``s3a_libs`` fetches hadoop-aws and the
parts of the AWS SDK it needs once with Maven (``jobs/s3a/pom.xml``, ~13 MB) into a shared
cache; ``s3a_conf`` gives Spark those jars and the endpoint. Credentials are never put into
Spark's configuration: s3a reads the standard ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
environment (or an instance role) itself.

Spark writes with Hadoop's default (rename-based) committer: on S3 a rename is a copy, slow but
correct for what the pipeline writes, because a gold build only becomes visible when a manifest
names its files after the job committed (``engagement.publish``). The S3A "magic" committer
would need spark-hadoop-cloud, which has no build for Spark 4.3 on Maven Central.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from core import maven

POM = Path(__file__).resolve().parent / "s3a" / "pom.xml"
LIBS_ENV = "ENGAGEMENT_S3A_LIBS"


def hadoop_version() -> str:
    """``hadoop.version`` in ``jobs/s3a/pom.xml``: the Hadoop pyspark bundles."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(POM).getroot().find("m:properties/m:hadoop.version", ns).text.strip()


def s3a_libs(*, quiet: bool = False) -> Path:
    """The folder with hadoop-aws and its SDK jars, fetched on first use."""
    default = f"~/.cache/engagement/spark-s3a-{hadoop_version()}/libs"
    libs = maven.libs_folder(LIBS_ENV, default)
    return maven.fetch(
        POM, libs, what=f"Spark's S3 connector (hadoop-aws {hadoop_version()})",
        required_jar=f"hadoop-aws-{hadoop_version()}.jar", size_hint="13 MB", quiet=quiet,
    )  # fmt: skip


def s3a_conf(endpoint: str | None, region: str) -> dict[str, str]:
    """Spark settings to read and write ``s3a://`` at ``endpoint`` (AWS itself when None)."""
    jars = sorted(str(p) for p in s3a_libs().glob("*.jar"))
    conf = {
        "spark.jars": ",".join(jars),
        "spark.hadoop.fs.s3a.endpoint.region": region,
        # bucket.host names need DNS for every bucket; S3-compatible servers answer path style.
        "spark.hadoop.fs.s3a.path.style.access": "true",
    }
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    return conf
