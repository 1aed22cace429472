"""docker-compose.yml and the Dockerfile, validated statically (no Docker engine runs here)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import lzma
import os
import re
import shutil
import subprocess
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from core.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_images_are_pinned_or_built_here():
    for name, service in COMPOSE["services"].items():
        if "build" in service:
            assert service["build"] == "."
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"


def test_kafka_runs_in_kraft_mode_without_auto_created_topics():
    env = COMPOSE["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in str(COMPOSE).lower()
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) > 64 * 1024  # oversized events must reach the dead-letter path


def test_every_engagement_variable_is_a_real_setting():
    known = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    used = set(re.findall(r"\b(ENGAGEMENT_[A-Z0-9_]+)\s*:", (ROOT / "docker-compose.yml").read_text()))
    assert used, "the stack configures nothing?"
    assert used <= known, f"unknown settings in docker-compose.yml: {sorted(used - known)}"


def test_no_secret_is_written_in_the_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"PASSWORD|SECRET|FERNET", line) and ":" in line:
            assert re.search(r"\$\{(POSTGRES_PASSWORD|ANALYST_DB_PASSWORD|AIRFLOW_DB_PASSWORD|AIRFLOW_JWT_SECRET|AIRFLOW_FERNET_KEY|S3_SECRET_KEY):\?", line), (
                f"literal secret? {line.strip()}"
            )


def test_dockerfile_copies_what_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_the_image_installs_only_packages_its_debian_release_has():
    # `python:3.11-slim` follows Debian's current release, and packages come and go between
    # releases (trixie has OpenJDK 21 and 25, not the 17 this image once installed), so the image
    # names its release and every package it installs is looked up in that release's index.
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    base = re.search(r"^FROM python:[0-9.]+-slim-([a-z]+)\s*$", text, re.MULTILINE)
    assert base, "the Dockerfile's base image names no Debian release (python:VERSION-slim-RELEASE)"
    wanted = {word for words in re.findall(r"apt-get install ([^&\n]+)", text) for word in words.split() if not word.startswith("-")}
    assert wanted, "the Dockerfile installs no Debian package?"
    index = f"https://deb.debian.org/debian/dists/{base.group(1)}/main/binary-amd64/Packages.xz"
    with urllib.request.urlopen(index, timeout=120) as response:
        available = set(re.findall(r"^Package: (\S+)$", lzma.decompress(response.read()).decode(), re.MULTILINE))
    assert wanted <= available, f"not in Debian {base.group(1)} ({index}): {sorted(wanted - available)}"


def test_loader_gets_time_to_stop_gracefully():
    loader = COMPOSE["services"]["loader"]
    assert loader["stop_grace_period"] and loader["restart"] == "unless-stopped"


# The Compose file as Docker Compose itself reads it --------------------------------------------

ENV_EXAMPLE = ROOT / ".env.example"


def _compose_check(env_file: Path) -> subprocess.CompletedProcess[str]:
    """Validate with compose-go (the Compose Specification's reference implementation, run
    from deploy/compose-check): schema, interpolation from the env file, model checks."""
    if shutil.which("go") is None:
        pytest.fail("Go is needed to validate docker-compose.yml (deploy/compose-check); install Go 1.24+")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "AIRFLOW_", "ENGAGEMENT_"))}
    return subprocess.run(
        ["go", "run", ".", str(ROOT / "docker-compose.yml"), str(env_file)],
        cwd=ROOT / "deploy" / "compose-check", env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """The normalised project, with every secret of .env.example filled in."""
    filled = tmp_path_factory.mktemp("compose") / ".env"
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, sep, value = line.partition("=")
        lines.append(f"{key}=test-{key.lower()}" if sep and not value and not key.startswith("#") else line)
    filled.write_text("\n".join(lines) + "\n")
    done = _compose_check(filled)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_compose_file_is_valid_and_refuses_to_start_without_secrets(project, tmp_path):
    assert {"kafka", "loader", "spark-master", "spark-worker", "postgres", "airflow-db"} <= set(project["services"])
    empty = _compose_check(ENV_EXAMPLE)  # .env.example as shipped: every secret blank
    assert empty.returncode != 0 and "set POSTGRES_PASSWORD in .env" in empty.stderr


def test_every_variable_the_file_reads_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    declared = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert read <= declared, f"not in .env.example: {sorted(read - declared)}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_airflow_runs_as_its_real_components_with_its_own_database(project):
    services = project["services"]
    airflow = {name: s for name, s in services.items() if s.get("entrypoint") == ["airflow"]}
    assert {tuple(s["command"][:1]) for s in airflow.values()} == {
        ("db",), ("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",)
    }
    urls = {
        s["environment"][key] for s in airflow.values()
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC")
    }  # fmt: skip
    (url,) = urls  # tests/test_postgres.py migrates a real PostgreSQL through this driver
    assert url.startswith("postgresql+psycopg://") and "@airflow-db:5432/airflow" in url
    assert "@postgres:" not in url, "Airflow's metadata must not live in the analysts' database"


def test_airflow_tasks_wait_for_the_api_server_longer_than_its_first_answer_took(project):
    # 5.2-6 s in tests/test_airflow_scheduler.py with Spark on the same cores; Airflow's default
    # timeout, 5 s, failed a task there before it began.
    for name, service in project["services"].items():
        if service.get("entrypoint") == ["airflow"]:
            assert float(service["environment"].get("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", 5)) >= 30, name


def test_commands_exist_in_the_project_and_in_airflow(project):
    from airflow.cli.cli_parser import get_parser

    from engagement.cli import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> set[str]:
        return set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)

    ours, airflows = subcommands(build_parser()), subcommands(get_parser())
    for name, service in project["services"].items():
        if "build" not in service:
            continue
        entrypoint, command = service.get("entrypoint") or ["engagement"], service.get("command") or []
        if entrypoint == ["airflow"]:
            assert command[0] in airflows, (name, command)
        elif entrypoint == ["spark-class"]:
            assert command[0] in ("org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker")
        else:
            assert command[0] in ours, (name, command)
        for test in [service.get("healthcheck", {}).get("test") or []]:
            if test[:2] == ["CMD", "airflow"]:
                assert test[2] in airflows, (name, test)


def test_airflow_settings_are_real_options(project):
    from airflow.configuration import conf

    # Airflow's own description of its options (has_option misses those without a default).
    described = conf.configuration_description
    for name, service in project["services"].items():
        for key in service.get("environment") or {}:
            if key.startswith("AIRFLOW__"):
                _, section, option = key.lower().split("__", 2)
                assert option in described.get(section, {}).get("options", {}), f"{name}: {key} is no Airflow option"


def test_addresses_agree(project):
    services = project["services"]
    env = services["loader"]["environment"]
    assert env["ENGAGEMENT_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["ENGAGEMENT_SPARK_MASTER"] == "spark://spark-master:7077"
    assert services["spark-master"]["command"][-4:-2] == ["--port", "7077"]
    assert services["spark-worker"]["command"][1] == "spark://spark-master:7077"
    published = [p["published"] for s in services.values() for p in s.get("ports") or []]
    assert len(published) == len(set(published)), f"a host port is used twice: {published}"
    # Whoever reads or writes the warehouse mounts the same volume at ENGAGEMENT_HOME.
    for name in ("loader", "spark-worker", "airflow-scheduler"):
        mounts = {(v["source"], v["target"]) for v in services[name].get("volumes") or []}
        assert ("warehouse", "/data") in mounts, name


def test_long_running_services_have_health_checks(project):
    one_shot = {"topics", "airflow-init"}
    for name, service in project["services"].items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert packages | {"dags"} <= copied, f"the image lacks {sorted(packages | {'dags'} - copied)}"
