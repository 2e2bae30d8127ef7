"""A real SeaweedFS (`weed server -s3`) on loopback ports, with real access keys."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ACCESS_KEY = "modelloop-test"
SECRET_KEY = "modelloop-test-secret-0123456789"
BUCKET = "modelloop-test"


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return str(here)
    from shutil import which

    return which("weed")


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Weed:
    """`start()` returns once the S3 port answers and the bucket exists."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = workdir
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"]
        names += ["s3", "s3_grpc"]
        # gRPC ports must be chosen too: weed's default is port + 10000, which may be taken.
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def url(self, prefix: str | None = None) -> str:
        return f"s3://{BUCKET}/{prefix or uuid.uuid4().hex[:12]}"

    def start(self, timeout: float = 60.0) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        identity = {
            "name": "modelloop",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        p = self.ports
        cmd = [
            self.binary,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",
            "-iam=false",
            "-metricsPort=0",
            "-volume.max=20",
            "-master.volumeSizeLimitMB=64",
        ]
        log = open(self.workdir / "weed.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited {self.proc.returncode}: {self.log_tail()}")
            try:
                # The bucket is a folder under the filer's /buckets; then S3 must list it.
                r = httpx.post(
                    f"http://127.0.0.1:{self.ports['filer']}/buckets/{BUCKET}/?op=mkdir",
                    timeout=2,
                )
                if r.status_code in (200, 201, 409) and self._s3_lists():
                    return
                last = f"filer {r.status_code}, S3 {getattr(self, 'last_error', '')}"
            except (httpx.HTTPError, OSError) as e:
                last = str(e)
            time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS not ready in {timeout} s ({last}): {self.log_tail()}")

    def _s3_lists(self) -> bool:
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            BUCKET,
            config={
                "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET_KEY,
                "region": "us-east-1",
                "endpoint": self.endpoint,
            },
            client_options={"allow_http": True, "timeout": "3s"},
            retry_config={"max_retries": 0},
        )
        try:
            obstore.list_with_delimiter(store, None)
        except Exception as e:
            self.last_error = str(e)[:300]
            return False
        return True

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.workdir / "weed.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def upload_registry(source: Path, url: str) -> None:
    """Every version of a folder registry published into `url` in order, the same active."""
    from modelloop.store.registry import FolderRegistry, open_registry

    folder = FolderRegistry(source)
    target = open_registry(url)
    for model in folder.models():
        for v in folder.versions(model):
            onnx, ref = folder.onnx_bytes(model, v), folder.reference(model, v)
            published = target.publish(model, onnx, folder.metadata(model, v), ref)
            assert published.version == v
        active = folder.active(model)
        if active is not None:
            target.promote(model, active, "test", "uploaded")
