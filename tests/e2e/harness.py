"""Starts the real flowserve binary on free loopback ports for end-to-end tests."""
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("FLOWSERVE_BIN", str(ROOT / "build" / "flowserve"))
# FLOWSERVE_GRPC_ENGINE=grpcpp (or nghttp2) runs every suite against that gRPC engine.
ENGINE_ARGS = ([f"--grpc-engine={os.environ['FLOWSERVE_GRPC_ENGINE']}"]
               if os.environ.get("FLOWSERVE_GRPC_ENGINE") else [])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_model(repo, name, config, versions=(1,), files=None):
    """Writes <repo>/<name>/config.pbtxt and empty version folders.

    files: {relative path: bytes or str} written under the model folder.
    """
    model = pathlib.Path(repo) / name
    model.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (model / "config.pbtxt").write_text(config)
    for v in versions:
        (model / str(v)).mkdir(exist_ok=True)
    for rel, data in (files or {}).items():
        p = model / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return model


def identity_config(name, dtype="TYPE_FP32", dims="[ -1 ]", max_batch_size=0, extra=""):
    return f"""
name: "{name}"
backend: "identity"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT0" data_type: {dtype} dims: {dims} }} ]
output [ {{ name: "OUTPUT0" data_type: {dtype} dims: {dims} }} ]
{extra}
"""


class Server:
    """A running flowserve. Use as a context manager; stop() is idempotent.

    wait: "ready" waits for /v2/health/ready, "live" for /v2/health/live, None not at all.
    """

    # A port free_port() saw free can be taken before the server binds it (an outgoing
    # connection's ephemeral port, another suite on the machine): such a start is retried on
    # new ports, so a test never fails for a port it did not choose.
    PORT_TAKEN = ("Address already in use", "address in use")

    def __init__(self, repo, args=(), wait="live", timeout=60, env=None):
        for attempt in range(3):
            self._start(repo, args, env)
            if not wait:
                return
            try:
                self.wait_for(wait, timeout)
                return
            except RuntimeError:
                if attempt == 2 or not any(t in self.log() for t in self.PORT_TAKEN):
                    raise

    def _start(self, repo, args, env):
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.log_file = tempfile.NamedTemporaryFile(prefix="flowserve-", suffix=".log", delete=False)
        cmd = [BIN, f"--model-repository={repo}", f"--http-port={self.http_port}",
               f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}",
               "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", *ENGINE_ARGS, *args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"

    def wait_for(self, what="live", timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flowserve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/v2/health/{what}", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"flowserve not {what} after {timeout}s:\n{self.log()}")

    def log(self):
        self.log_file.flush()
        return pathlib.Path(self.log_file.name).read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_to_exit(repo, args=(), timeout=60):
    """Runs flowserve expecting it to exit by itself; returns (returncode, output)."""
    cmd = [BIN, f"--model-repository={repo}", f"--http-port={free_port()}",
           f"--grpc-port={free_port()}", f"--metrics-port={free_port()}", *ENGINE_ARGS, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def labelled_config(name):
    """An identity model whose FP32 [4] output has labels.txt (for classification)."""
    return f"""
name: "{name}"
backend: "identity"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" }} ]
"""
