"""docker-compose.yml and the Dockerfile, validated statically (no Docker engine runs here)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from core.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_stack_has_every_part():
    assert {"kafka", "loader", "spark-master", "spark-worker", "postgres", "airflow"} <= set(COMPOSE["services"])


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
    used = set(re.findall(r"\b(ENGAGEMENT_[A-Z_]+)\s*:", (ROOT / "docker-compose.yml").read_text()))
    assert used, "the stack configures nothing?"
    assert used <= known, f"unknown settings in docker-compose.yml: {sorted(used - known)}"


def test_no_secret_is_written_in_the_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if "PASSWORD" in line and ":" in line:
            assert "${POSTGRES_PASSWORD" in line, f"literal secret? {line.strip()}"


def test_dockerfile_copies_what_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_loader_gets_time_to_stop_gracefully():
    loader = COMPOSE["services"]["loader"]
    assert loader["stop_grace_period"] and loader["restart"] == "unless-stopped"
