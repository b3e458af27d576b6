"""Model control modes, the repository API, and reload/unload under traffic."""
import json
import os
import pathlib
import shutil
import threading
import time

import pytest
import requests

from harness import Server, identity_config, write_model

POLL = ["--model-control-mode=poll", "--repository-poll-secs=1"]
EXPLICIT = ["--model-control-mode=explicit"]


def body(values):
    return {"inputs": [{"name": "INPUT0", "shape": [len(values)], "datatype": "FP32",
                        "data": list(values)}]}


def infer(s, model, values=(1.0, 2.0), version=""):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return requests.post(s.url + path, json=body(values), timeout=30)


def index(s, ready=False):
    return requests.post(s.url + "/v2/repository/index", json={"ready": ready}).json()


def states(s, model):
    return {e.get("version", ""): (e["state"], e.get("reason", ""))
            for e in index(s) if e["name"] == model}


def wait_until(pred, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write_atomic(path, text):
    tmp = pathlib.Path(str(path) + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Traffic:
    """A client loop in a thread: counts successes, failures (with reasons) and versions."""

    def __init__(self, s, model, values=(3.0, 4.0)):
        self.s, self.model, self.values = s, model, list(values)
        self.ok, self.failed, self.versions = 0, [], {}
        self.stop_flag = threading.Event()
        self.sess = requests.Session()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop_flag.is_set():
            try:
                r = self.sess.post(f"{self.s.url}/v2/models/{self.model}/infer",
                                   json=body(self.values), timeout=30)
                if r.status_code == 200 and r.json()["outputs"][0]["data"] == self.values:
                    self.ok += 1
                    v = r.json()["model_version"]
                    self.versions[v] = self.versions.get(v, 0) + 1
                else:
                    self.failed.append((r.status_code, r.text))
            except requests.RequestException as e:
                self.failed.append((0, str(e)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(30)


def test_none_mode_refuses_api(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    with Server(tmp_path, ["--model-control-mode=none"], wait="ready") as s:
        for op in ("load", "unload"):
            r = requests.post(f"{s.url}/v2/repository/models/a/{op}")
            assert r.status_code != 200
            assert "not allowed" in r.json()["error"]
        assert infer(s, "a").status_code == 200


def test_explicit_mode_star_loads_all_and_index_shows_state(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    write_model(tmp_path, "b", identity_config("b"))
    with Server(tmp_path, EXPLICIT + ["--load-model=*"], wait="ready") as s:
        assert states(s, "a") == {"1": ("READY", "")}
        assert states(s, "b") == {"1": ("READY", "")}
        assert requests.post(f"{s.url}/v2/repository/models/b/unload").status_code == 200
        assert states(s, "b") == {"1": ("UNAVAILABLE", "unloaded")}
        assert [e["name"] for e in index(s, ready=True)] == ["a"]
        r = infer(s, "b")
        assert r.status_code in (400, 404, 503) and "'b'" in r.json()["error"]


def test_explicit_reload_with_config_override_and_broken_override(tmp_path):
    write_model(tmp_path, "m", identity_config("m"), versions=(1, 2))
    with Server(tmp_path, EXPLICIT + ["--load-model=m"], wait="ready") as s:
        assert infer(s, "m").json()["model_version"] == "2"
        # an override selecting version 1 only: reload switches traffic to it
        cfg = {"name": "m", "backend": "identity",
               "version_policy": {"specific": {"versions": [1]}},
               "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
               "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}]}
        r = requests.post(f"{s.url}/v2/repository/models/m/load",
                          json={"parameters": {"config": json.dumps(cfg)}})
        assert r.status_code == 200, r.text
        assert infer(s, "m").json()["model_version"] == "1"
        assert infer(s, "m", version="2").status_code in (400, 404, 503)
        # a broken override: the load answers why and version 1 keeps serving
        bad = dict(cfg, output=[{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [0]}])
        r = requests.post(f"{s.url}/v2/repository/models/m/load",
                          json={"parameters": {"config": json.dumps(bad)}})
        assert r.status_code == 400, r.text
        assert "dims" in r.json()["error"]
        assert infer(s, "m").json()["model_version"] == "1"
        st = states(s, "m")
        assert st["1"][0] == "READY" and "reload failed" in st["1"][1] and "dims" in st["1"][1]
        assert requests.get(s.url + "/v2/health/ready").status_code == 200


def test_explicit_load_failure_keeps_old_version(tmp_path):
    model = write_model(tmp_path, "m", identity_config("m"))
    with Server(tmp_path, EXPLICIT + ["--load-model=m"], wait="ready") as s:
        write_atomic(model / "config.pbtxt", identity_config("m", dims="[ 0 ]"))
        r = requests.post(f"{s.url}/v2/repository/models/m/load")
        assert r.status_code == 400 and "config.pbtxt" in r.json()["error"]
        assert infer(s, "m").status_code == 200
        write_atomic(model / "config.pbtxt", identity_config("m", dtype="TYPE_INT32"))
        r = requests.post(f"{s.url}/v2/repository/models/m/load")
        assert r.status_code == 200, r.text
        r = requests.post(s.url + "/v2/models/m/infer", json={"inputs": [
            {"name": "INPUT0", "shape": [1], "datatype": "INT32", "data": [5]}]})
        assert r.status_code == 200 and r.json()["outputs"][0]["datatype"] == "INT32"


def test_unload_waits_for_in_flight_request(tmp_path):
    write_model(tmp_path, "slow", identity_config(
        "slow", extra='parameters { key: "execute_delay_ms" value { string_value: "1000" } }'))
    with Server(tmp_path, EXPLICIT + ["--load-model=slow"], wait="ready") as s:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=infer(s, "slow", [9.0])))
        t.start()
        time.sleep(0.3)
        start = time.time()
        r = requests.post(f"{s.url}/v2/repository/models/slow/unload")
        assert r.status_code == 200
        assert time.time() - start > 0.4  # it waited for the executing request
        t.join(10)
        assert result["r"].status_code == 200 and result["r"].json()["outputs"][0]["data"] == [9.0]
        r = infer(s, "slow")
        assert r.status_code in (400, 404, 503) and "slow" in r.json()["error"]


def test_load_of_one_model_does_not_block_others(tmp_path):
    # The identity backend's load_delay_ms makes this load take 3 s: health and the
    # other model must keep answering quickly all the while.
    write_model(tmp_path, "a", identity_config("a"))
    write_model(tmp_path, "slow", identity_config(
        "slow", extra='parameters { key: "load_delay_ms" value { string_value: "3000" } }'))
    with Server(tmp_path, EXPLICIT + ["--load-model=a"], wait="ready") as s:
        done = threading.Event()
        latencies = []
        result = {}

        def load():
            r = requests.post(f"{s.url}/v2/repository/models/slow/load", timeout=60)
            result["status"] = r.status_code
            done.set()

        t0 = time.time()
        t = threading.Thread(target=load)
        t.start()
        while not done.is_set():
            t1 = time.time()
            assert requests.get(s.url + "/v2/health/ready").status_code == 200
            assert infer(s, "a").status_code == 200
            latencies.append(time.time() - t1)
        t.join()
        assert result["status"] == 200
        assert time.time() - t0 >= 3.0  # the load really was slow
        assert len(latencies) > 10 and max(latencies) < 1.0
        assert infer(s, "slow").status_code == 200


def test_concurrent_load_unload_infer_hammer(tmp_path):
    names = [f"m{i}" for i in range(3)]
    for n in names:
        write_model(tmp_path, n, identity_config(n))
    with Server(tmp_path, EXPLICIT + ["--load-model=*"], wait="ready") as s:
        stop = threading.Event()
        bad, counts = [], {"ok": 0, "refused": 0}
        lock = threading.Lock()

        def client(k):
            sess = requests.Session()
            i = 0
            while not stop.is_set():
                vals = [float(k), float(i)]
                r = sess.post(f"{s.url}/v2/models/{names[i % 3]}/infer", json=body(vals), timeout=30)
                with lock:
                    if r.status_code == 200 and r.json()["outputs"][0]["data"] == vals:
                        counts["ok"] += 1
                    elif r.status_code in (400, 404, 503) and names[i % 3] in r.json()["error"]:
                        counts["refused"] += 1
                    else:
                        bad.append((r.status_code, r.text))
                i += 1

        def control(k):
            sess = requests.Session()
            i = 0
            while not stop.is_set():
                n = names[(i + k) % 3]
                op = "load" if (i // 3) % 2 == 0 else "unload"
                r = sess.post(f"{s.url}/v2/repository/models/{n}/{op}", timeout=30)
                if r.status_code != 200 and not (op == "unload" and r.status_code in (400, 404)):
                    with lock:
                        bad.append(("control", r.status_code, r.text))
                i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        threads += [threading.Thread(target=control, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(4)
        stop.set()
        for t in threads:
            t.join(30)
        assert not bad, bad[:5]
        assert counts["ok"] > 50 and counts["refused"] > 0, counts
        # everything still works afterwards
        for n in names:
            assert requests.post(f"{s.url}/v2/repository/models/{n}/load").status_code == 200
            assert infer(s, n).status_code == 200


def test_poll_mode_version_added_and_removed_under_load(tmp_path):
    model = write_model(tmp_path, "m", identity_config("m"))
    with Server(tmp_path, POLL, wait="ready") as s:
        with Traffic(s, "m") as traffic:
            time.sleep(0.3)
            t0 = time.time()
            (model / "2").mkdir()
            wait_until(lambda: infer(s, "m").json()["model_version"] == "2", what="version 2")
            seen_after = time.time() - t0
            time.sleep(0.3)
            shutil.rmtree(model / "2")
            wait_until(lambda: infer(s, "m").json()["model_version"] == "1", what="back to 1")
            time.sleep(0.3)
        assert traffic.failed == [], traffic.failed[:5]
        assert traffic.versions.get("1", 0) > 0 and traffic.versions.get("2", 0) > 0, traffic.versions
        assert seen_after < 3.0
        print(f"\npoll: version 2 serving {seen_after:.2f}s after its folder appeared; "
              f"{traffic.ok} requests, 0 failed")
        assert states(s, "m") == {"1": ("READY", "")}


def test_poll_mode_broken_config_keeps_old_serving_then_fix(tmp_path):
    model = write_model(tmp_path, "m", identity_config("m"))
    with Server(tmp_path, POLL, wait="ready") as s:
        with Traffic(s, "m") as traffic:
            write_atomic(model / "config.pbtxt", identity_config("m", dims="[ 0 ]"))
            wait_until(lambda: "reload failed" in states(s, "m")["1"][1], what="failed reload")
            assert states(s, "m")["1"][0] == "READY"
            assert "dims" in states(s, "m")["1"][1]
            time.sleep(1.5)  # no retry storm: still the same state
            # a good config change reloads (new dtype proves the new config serves)
            write_atomic(model / "config.pbtxt",
                         identity_config("m", extra='parameters { key: "x" value { string_value: "1" } }'))
            wait_until(lambda: states(s, "m")["1"] == ("READY", ""), what="good reload")
        assert traffic.failed == [], traffic.failed[:5]
        assert traffic.ok > 20


def test_poll_mode_adds_and_removes_models(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    with Server(tmp_path, POLL, wait="ready") as s:
        write_model(tmp_path / "staging", "b", identity_config("b"))
        os.replace(tmp_path / "staging" / "b", tmp_path / "b")
        wait_until(lambda: infer(s, "b").status_code == 200, what="b loaded")
        shutil.rmtree(tmp_path / "a")
        wait_until(lambda: infer(s, "a").status_code == 404, what="a removed")
        assert "a" not in {e["name"] for e in index(s)}
        r = requests.post(f"{s.url}/v2/repository/models/b/unload")
        assert r.status_code != 200 and "polling" in r.json()["error"]


def test_grpc_repository_load_unload(tmp_path):
    import grpc
    import grpc_stubs
    pb, pb_grpc = grpc_stubs.load()
    write_model(tmp_path, "a", identity_config("a"))
    with Server(tmp_path, EXPLICIT, wait="ready") as s:
        channel = grpc.insecure_channel(s.grpc_url)
        try:
            grpc.channel_ready_future(channel).result(timeout=3)
        except grpc.FutureTimeoutError:
            pytest.skip("this binary was built without the gRPC frontend")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="a"), timeout=10)
        assert infer(s, "a").status_code == 200
        idx = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), timeout=10)
        assert [m.name for m in idx.models] == ["a"]
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="a"), timeout=10)
        assert infer(s, "a").status_code != 200
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="nope"), timeout=10)
        assert "nope" in e.value.details()
