"""Model repositories on an S3-compatible object store (s3rver on loopback, objects put by
boto3): start-up, nested prefixes, poll add/change/remove, explicit load, credentials
from a file and from the environment, an outage while polling, a missing bucket, local +
s3 together, warm restarts from the cache and a 100 MB model file."""
import json
import os
import pathlib
import re
import time

import pytest
import requests

from harness import BIN, Server, free_port, identity_config, write_model
import s3_harness
from s3_harness import S3rver, s3_env

# install-deps.sh installs s3rver: without it the install is broken, and these tests say so
# (a skip would let a broken machine pass).
if not s3_harness.available():
    raise RuntimeError("s3rver is not installed: run scripts/install-deps.sh "
                       "(or scripts/install-s3rver.sh)")

POLL = ["--model-control-mode=poll", "--repository-poll-secs=1"]
EXPLICIT = ["--model-control-mode=explicit"]


@pytest.fixture
def s3():
    server = S3rver()
    server.create_bucket("bucket")
    yield server
    server.close()


def run_to_exit(repo, args=(), env=None, timeout=60):
    """Runs flowserve expecting it to exit by itself; returns (returncode, output)."""
    import subprocess
    cmd = [BIN, f"--model-repository={repo}", f"--http-port={free_port()}",
           f"--grpc-port={free_port()}", f"--metrics-port={free_port()}", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return p.returncode, p.stdout + p.stderr


def infer(s, model, values=(1.0, 2.0), version=""):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "INPUT0", "shape": [len(values)], "datatype": "FP32",
                        "data": list(values)}]}
    return requests.post(s.url + path, json=body, timeout=30)


def wait_until(pred, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def put_model(s3, tmp_path, prefix, name, versions=(1,), config=None, files=None, bucket="bucket"):
    """Writes an identity model locally (a small file in each version folder: S3 has no
    empty folders) and uploads it under bucket/<prefix>/<name>/."""
    local = tmp_path / "upload" / name
    all_files = {f"{v}/model.bin": f"{name} v{v}" for v in versions}
    all_files.update(files or {})
    write_model(tmp_path / "upload", name, config or identity_config(name), versions, all_files)
    s3.upload_tree(local, bucket, f"{prefix}/{name}" if prefix else name)


def cached_files(cache):
    return sorted(p.relative_to(cache).as_posix().split("/models/", 1)[-1]
                  for p in pathlib.Path(cache).rglob("*") if p.is_file() and "/models/" in p.as_posix())


def test_startup_from_nested_prefix_fetches_only_selected_versions(s3, tmp_path):
    put_model(s3, tmp_path, "a/b", "m1", versions=(1, 2, 3))
    put_model(s3, tmp_path, "a/b", "m2", files={"labels.txt": "x\ny\n"})
    s3.put("bucket", "a/other/m3/config.pbtxt", identity_config("m3"))  # outside the prefix
    cache = tmp_path / "cache"
    with Server(s3.url("bucket", "a/b"), [f"--repository-cache-dir={cache}"], wait="ready",
                env=s3_env()) as s:
        assert infer(s, "m1").status_code == 200
        assert infer(s, "m2").status_code == 200
        assert infer(s, "m1", version="3").status_code == 200
        assert infer(s, "m1", version="1").status_code != 200
        assert infer(s, "m3").status_code == 404
        files = cached_files(cache)
        # The default version policy (latest 1) selects 3: versions 1 and 2 are not fetched.
        assert "m1/3/model.bin" in files and "m1/1/model.bin" not in files
        assert "m2/labels.txt" in files
        log = s.log()
    assert s3_harness.SECRET + "\n" not in log and "S3RVER" not in log.replace("S3RVER_", "")


def test_poll_mode_add_change_remove(s3, tmp_path):
    put_model(s3, tmp_path, "repo", "a")
    with Server(s3.url("bucket", "repo"), POLL, wait="ready", env=s3_env()) as s:
        assert infer(s, "a").status_code == 200
        # add a model
        put_model(s3, tmp_path, "repo", "b")
        wait_until(lambda: infer(s, "b").status_code == 200, what="b loaded")
        # change a model: a new version folder loads, the policy moves to it
        put_model(s3, tmp_path, "repo", "a", versions=(2,))
        wait_until(lambda: infer(s, "a", version="2").status_code == 200, what="a v2 loaded")
        wait_until(lambda: infer(s, "a", version="1").status_code != 200, what="a v1 unloaded")
        # change an object in place (new ETag): the model reloads with the new config
        s3.put("bucket", "repo/b/config.pbtxt", identity_config("b", dims="[ 2 ]"))
        wait_until(lambda: infer(s, "b", values=(1.0, 2.0, 3.0)).status_code == 400,
                   what="b reloaded with dims [2]")
        assert infer(s, "b", values=(1.0, 2.0)).status_code == 200
        # remove a model
        s3.delete_prefix("bucket", "repo/a/")
        wait_until(lambda: infer(s, "a").status_code == 404, what="a removed")
        assert infer(s, "b", values=(1.0, 2.0)).status_code == 200


def test_explicit_mode_fetches_at_load_time(s3, tmp_path):
    put_model(s3, tmp_path, "", "m1")
    put_model(s3, tmp_path, "", "m2")
    cache = tmp_path / "cache"
    with Server(s3.url("bucket"), EXPLICIT + ["--load-model=m2", f"--repository-cache-dir={cache}"],
                wait="ready", env=s3_env()) as s:
        assert infer(s, "m2").status_code == 200
        assert infer(s, "m1").status_code != 200
        files = cached_files(cache)
        assert "m1/config.pbtxt" in files and "m1/1/model.bin" not in files
        # The index names the s3 models never loaded, as for a local repository.
        names = {e["name"] for e in requests.post(f"{s.url}/v2/repository/index", json={}).json()}
        assert {"m1", "m2"} <= names
        r = requests.post(f"{s.url}/v2/repository/models/m1/load")
        assert r.status_code == 200, r.text
        assert infer(s, "m1").status_code == 200
        assert "m1/1/model.bin" in cached_files(cache)
        r = requests.post(f"{s.url}/v2/repository/models/nope/load")
        assert r.status_code != 200


def write_credentials(tmp_path, entries):
    path = tmp_path / "cloud_credential.json"
    path.write_text(json.dumps({"s3": entries}))
    return str(path)


def test_credential_file_longest_prefix_wins_over_environment(s3, tmp_path):
    put_model(s3, tmp_path, "x", "m")
    url = s3.url("bucket", "x")
    good = {"key_id": s3_harness.KEY_ID, "secret_key": s3_harness.SECRET, "region": "us-east-1"}
    bad = {"key_id": "WRONGKEY", "secret_key": "wrong-secret-do-not-log", "region": "us-east-1"}
    # The environment's keys are wrong; the file's longest matching entry is right.
    creds = write_credentials(tmp_path, {"": bad, f"s3://127.0.0.1:{s3.port}/bucket": good,
                                         f"s3://127.0.0.1:{s3.port}/other": bad})
    env = s3_env(key_id="WRONGKEY", secret="wrong-secret-do-not-log",
                 TRITON_CLOUD_CREDENTIAL_PATH=creds)
    with Server(url, wait="ready", env=env) as s:
        assert infer(s, "m").status_code == 200
        assert "wrong-secret-do-not-log" not in s.log()
    # No entry matches: the environment's keys are used (and they are right).
    creds = write_credentials(tmp_path, {"s3://elsewhere:9000/bucket": bad})
    with Server(url, wait="ready", env=s3_env(TRITON_CLOUD_CREDENTIAL_PATH=creds)) as s:
        assert infer(s, "m").status_code == 200
    # The matching entry is wrong: s3rver refuses the signature, the error says so
    # without the secret, and --exit-on-error makes it fatal.
    creds = write_credentials(tmp_path, {"": bad})
    rc, out = run_to_exit(url, env=s3_env(TRITON_CLOUD_CREDENTIAL_PATH=creds))
    assert rc != 0
    assert "403" in out and "InvalidAccessKeyId" in out, out
    assert "wrong-secret-do-not-log" not in out


def test_environment_credentials_and_denied_request(s3, tmp_path):
    put_model(s3, tmp_path, "", "m")
    with Server(s3.url("bucket"), wait="ready", env=s3_env()) as s:
        assert infer(s, "m").status_code == 200
    # s3rver does not verify signatures (the unit test checks ours against botocore's),
    # but it refuses an unknown key id: a denied request, 403 with S3's error code.
    rc, out = run_to_exit(s3.url("bucket"),
                          env=s3_env(key_id="UNKNOWNKEY", secret="not-the-secret-123"))
    assert rc != 0 and "403 InvalidAccessKeyId" in out, out
    assert "not-the-secret-123" not in out


def test_outage_during_polling_keeps_serving_and_resumes(s3, tmp_path):
    put_model(s3, tmp_path, "r", "a")
    with Server(s3.url("bucket", "r"), POLL, wait="ready", env=s3_env()) as s:
        assert infer(s, "a").status_code == 200
        s3.stop()
        time.sleep(4.5)  # several polls against a dead endpoint
        assert infer(s, "a").status_code == 200
        assert requests.get(f"{s.url}/v2/health/ready").status_code == 200
        outage_errors = [l for l in s.log().splitlines() if "keep their current state" in l]
        assert len(outage_errors) == 1, outage_errors  # once per outage, not per poll
        s3.start()
        put_model(s3, tmp_path, "r", "b")
        wait_until(lambda: infer(s, "b").status_code == 200, what="b loaded after the outage")
        assert "can be listed again" in s.log()
        assert infer(s, "a").status_code == 200


def test_missing_bucket(s3, tmp_path):
    url = s3.url("no-such-bucket", "models")
    rc, out = run_to_exit(url, ["--exit-on-error=true"], env=s3_env())
    assert rc != 0
    assert "no-such-bucket" in out and "does not exist" in out, out
    assert s3_harness.SECRET not in out.replace("S3RVER_", "").replace(s3_harness.KEY_ID, "")
    # Without --exit-on-error the server stays up, and a poll finds the bucket once it exists.
    with Server(url, ["--exit-on-error=false"] + POLL, wait="live", env=s3_env()) as s:
        assert requests.get(f"{s.url}/v2/health/live").status_code == 200
        s3.create_bucket("no-such-bucket")
        put_model(s3, tmp_path, "models", "late", bucket="no-such-bucket")
        wait_until(lambda: infer(s, "late").status_code == 200, what="late loaded")


def test_local_and_s3_repositories_together(s3, tmp_path):
    put_model(s3, tmp_path, "r", "remote")
    local = tmp_path / "local"
    write_model(local, "here", identity_config("here"))
    with Server(s3.url("bucket", "r"), [f"--model-repository={local}"], wait="ready",
                env=s3_env()) as s:
        assert infer(s, "remote").status_code == 200
        assert infer(s, "here").status_code == 200
        names = {e["name"] for e in requests.post(f"{s.url}/v2/repository/index", json={}).json()}
        assert {"remote", "here"} <= names


def fetched_bytes(log):
    return sum(int(m) for m in re.findall(r"fetched \d+ file\(s\), (\d+) bytes", log))


def test_100mb_model_and_warm_restart_fetches_nothing(s3, tmp_path):
    big = tmp_path / "upload" / "big" / "1" / "weights.bin"
    write_model(tmp_path / "upload", "big", identity_config("big"))
    with open(big, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(100):
            f.write(chunk)
    s3.upload_tree(tmp_path / "upload" / "big", "bucket", "big")
    cache = tmp_path / "cache"
    args = [f"--repository-cache-dir={cache}"]
    with Server(s3.url("bucket"), args, wait="ready", timeout=120, env=s3_env()) as s:
        assert infer(s, "big").status_code == 200
        assert fetched_bytes(s.log()) >= 100 << 20
    cached = next(pathlib.Path(cache).rglob("weights.bin"))
    assert cached.stat().st_size == 100 << 20
    with Server(s3.url("bucket"), args, wait="ready", env=s3_env()) as s:
        assert infer(s, "big").status_code == 200
        assert fetched_bytes(s.log()) == 0
    assert not list(pathlib.Path(cache).rglob("staging/*"))


def test_transient_failures_retry_and_a_cut_download_resumes(s3, tmp_path):
    data = os.urandom(3 << 20)
    put_model(s3, tmp_path, "", "m", files={"1/weights.bin": data})
    proxy = s3_harness.FlakyProxy(s3.port, cut_key="weights.bin", cut_after=1 << 20)
    try:
        cache = tmp_path / "cache"
        url = f"s3://127.0.0.1:{proxy.port}/bucket"
        with Server(url, [f"--repository-cache-dir={cache}"], wait="ready", env=s3_env()) as s:
            assert infer(s, "m").status_code == 200
        assert proxy.failures == ["503", "cut"]
        assert proxy.ranges == [f"bytes={1 << 20}-"]  # resumed where the cut left off
        assert next(pathlib.Path(cache).rglob("weights.bin")).read_bytes() == data
    finally:
        proxy.close()


def test_explicit_load_of_an_ensemble_fetches_its_composing_model(s3, tmp_path):
    from test_ensemble import ensemble_config
    put_model(s3, tmp_path, "", "inner")
    ens = ensemble_config(
        "ens", ['{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }'],
        ['{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }'],
        [("inner", {"INPUT0": "IN"}, {"OUTPUT0": "OUT"})])
    put_model(s3, tmp_path, "", "ens", config=ens)
    cache = tmp_path / "cache"
    with Server(s3.url("bucket"), EXPLICIT + [f"--repository-cache-dir={cache}"], wait="ready",
                env=s3_env()) as s:
        assert "inner/1/model.bin" not in cached_files(cache)
        r = requests.post(f"{s.url}/v2/repository/models/ens/load")
        assert r.status_code == 200, r.text
        assert "inner/1/model.bin" in cached_files(cache)
        body = {"inputs": [{"name": "IN", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}]}
        r = requests.post(f"{s.url}/v2/models/ens/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [1.0, 2.0]


def test_object_that_cannot_be_fetched_makes_its_model_unavailable(s3, tmp_path):
    put_model(s3, tmp_path, "", "good")
    put_model(s3, tmp_path, "", "bad", files={"1/weights.bin": "w"})
    proxy = s3_harness.FlakyProxy(s3.port, fail_key="bad/1/weights.bin", fail_list=False)
    try:
        url = f"s3://127.0.0.1:{proxy.port}/bucket"
        rc, out = run_to_exit(url, ["--exit-on-error=true"], env=s3_env())
        assert rc != 0 and "bad/1/weights.bin" in out, out
        with Server(url, ["--exit-on-error=false"], wait="live", timeout=90, env=s3_env()) as s:
            wait_until(lambda: infer(s, "good").status_code == 200, timeout=60, what="good loaded")
            entries = requests.post(f"{s.url}/v2/repository/index", json={}).json()
            bad = [e for e in entries if e["name"] == "bad"]
            assert bad and bad[0]["state"] == "UNAVAILABLE", entries
            assert "bad/1/weights.bin" in bad[0]["reason"] and "500 InternalError" in bad[0]["reason"]
            assert proxy.failures.count("500") >= 2  # retried before giving up
    finally:
        proxy.close()
