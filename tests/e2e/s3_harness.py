"""A real S3-compatible server (s3rver, from npm) on loopback, for the object-store tests.

Installed into .deps/s3rver by scripts/install-s3rver.sh (called by install-deps.sh).
s3rver knows one key id (S3RVER) and refuses a request signed with any other, but it does
not verify the signature itself (tests/unit/s3_sigv4_test.cc checks ours against
botocore's): the tests rely on the key id to tell which credentials the server used. Its quirks are handled here, never in the product.
"""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

from harness import ROOT, free_port

S3RVER_JS = ROOT / ".deps" / "s3rver" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
KEY_ID = "S3RVER"
SECRET = "S3RVER"


def available():
    return S3RVER_JS.exists() and shutil.which("node") is not None


class S3rver:
    """s3rver on 127.0.0.1:<free port> with a temporary data folder; stop()/start() keep
    both, so a test can take the endpoint down and bring it back."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="s3rver-")
        self.proc = None
        self.log = open(pathlib.Path(self.dir).with_suffix(".log"), "wb")
        self.start()
        import boto3
        from botocore.config import Config
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket, prefix=""):
        return f"s3://127.0.0.1:{self.port}/{bucket}" + (f"/{prefix}" if prefix else "")

    def start(self):
        # Node 20's OpenSSL 3 lacks the legacy cipher s3rver's paged listings use.
        self.proc = subprocess.Popen(
            ["node", "--openssl-legacy-provider", str(S3RVER_JS), "-d", self.dir,
             "-a", "127.0.0.1", "-p", str(self.port), "--silent"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("s3rver exited: " +
                                       pathlib.Path(self.log.name).read_text(errors="replace"))
                time.sleep(0.05)
        raise TimeoutError("s3rver did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.log.close()
        pathlib.Path(self.log.name).unlink(missing_ok=True)

    def create_bucket(self, bucket):
        self.client.create_bucket(Bucket=bucket)

    def put(self, bucket, key, data):
        if isinstance(data, str):
            data = data.encode()
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def put_file(self, bucket, key, path):
        self.client.upload_file(str(path), bucket, key)

    def delete_prefix(self, bucket, prefix):
        keys = [o["Key"] for o in self.list(bucket, prefix)]
        for k in keys:
            self.client.delete_object(Bucket=bucket, Key=k)
        return keys

    def list(self, bucket, prefix=""):
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = self.client.list_objects_v2(**kw)
            out += r.get("Contents", [])
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def upload_tree(self, local_root, bucket, prefix):
        """Uploads every file under local_root to <bucket>/<prefix>/<relative path>."""
        root = pathlib.Path(local_root)
        for p in sorted(root.rglob("*")):
            if p.is_file():
                self.put_file(bucket, f"{prefix}/{p.relative_to(root).as_posix()}".lstrip("/"), p)


def s3_env(key_id=KEY_ID, secret=SECRET, **extra):
    """Environment for a flowserve using s3rver's keys; a credential file is not inherited."""
    env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1", "TRITON_CLOUD_CREDENTIAL_PATH": ""}
    env.update(extra)
    return env


class FlakyProxy:
    """An HTTP proxy in front of s3rver that injects the transient failures a real store
    or network produces: the first listing answers 503 SlowDown, and the first GET of an
    object whose key contains `cut_key` is cut off after `cut_after` body bytes (the
    connection closes mid-body). A GET of a key containing `fail_key` always answers 500.
    Records the Range headers it forwarded."""

    def __init__(self, upstream_port, cut_key="", cut_after=0, fail_key=None, fail_list=True):
        import http.client
        import http.server
        import threading

        proxy = self
        self.ranges, self.failures = [], []
        self._listed = self._cut = False

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                if "Range" in self.headers:
                    proxy.ranges.append(self.headers["Range"])
                is_list = "list-type=2" in self.path
                if fail_key and fail_key in self.path and not is_list:
                    proxy.failures.append("500")
                    body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if is_list and fail_list and not proxy._listed:
                    proxy._listed = True
                    proxy.failures.append("503")
                    body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                cut = (self.command == "GET" and cut_key and cut_key in self.path and not proxy._cut
                       and resp.status == 200)
                if cut:
                    proxy._cut = True
                    proxy.failures.append("cut")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[:cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
