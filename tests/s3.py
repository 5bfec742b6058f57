"""An S3 API server for tests: moto's server mode in its own process, on a free port.

Tests point boto3 at it through the usual environment (``AWS_ACCESS_KEY_ID`` ...), as a
deployment would point it at MinIO or Ceph RGW. Stopped by its PID on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from edgekit.local_broker import free_port, port_open

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "edgekit-test", "AWS_SECRET_ACCESS_KEY": "edgekit-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


class MotoS3:
    """``with MotoS3() as s3: s3.url`` is an S3 endpoint until the block ends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MotoS3:
        server = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **CREDENTIALS})
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"moto_server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self):
        """A boto3 client of this server (the tests' view of the bucket)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=CREDENTIALS[
            "AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1")
