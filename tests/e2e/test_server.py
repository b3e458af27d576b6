"""Process-level behaviour: flags, start-up failures, readiness, graceful shutdown."""
import signal
import subprocess
import threading
import time

import requests

from harness import BIN, Server, identity_config, run_to_exit, write_model

BROKEN = 'name: "broken"\nbackend: "identity"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 0 ] } ]\n'


def infer_body(values, name="INPUT0"):
    return {"inputs": [{"name": name, "shape": [len(values)], "datatype": "FP32",
                        "data": list(values)}]}


def test_help_and_version():
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--model-repository", "--http-port", "--grpc-port", "--metrics-port",
                 "--exit-on-error", "--strict-readiness", "--model-control-mode", "--log-verbose"):
        assert flag in out.stdout
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "flowserve" in out.stdout


def test_unknown_flag_and_bad_value_are_named(tmp_path):
    out = subprocess.run([BIN, f"--model-repository={tmp_path}", "--no-such-flag=1"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "--no-such-flag" in out.stdout + out.stderr
    out = subprocess.run([BIN, f"--model-repository={tmp_path}", "--http-port=notanumber"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "--http-port" in out.stdout + out.stderr
    out = subprocess.run([BIN, f"--model-repository={tmp_path}", "--model-control-mode=sometimes"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "--model-control-mode" in out.stdout + out.stderr


def test_missing_repository_fails_start(tmp_path):
    rc, out = run_to_exit(tmp_path / "does-not-exist")
    assert rc != 0
    assert "does-not-exist" in out


def test_exit_on_error_true_exits_nonzero(tmp_path):
    write_model(tmp_path, "good", identity_config("good"))
    write_model(tmp_path, "broken", BROKEN)
    rc, out = run_to_exit(tmp_path)
    assert rc == 1
    assert "broken" in out


def test_broken_model_beside_good_ones_keeps_serving(tmp_path):
    write_model(tmp_path, "good", identity_config("good"))
    write_model(tmp_path, "broken", BROKEN)
    with Server(tmp_path, ["--exit-on-error=false"]) as s:
        # strict readiness (the default): not ready while a model is unavailable
        assert requests.get(s.url + "/v2/health/ready").status_code == 503
        assert requests.get(s.url + "/v2/health/live").status_code == 200
        r = requests.post(s.url + "/v2/models/good/infer", json=infer_body([1.0, 2.0]))
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [1.0, 2.0]
        idx = requests.post(s.url + "/v2/repository/index").json()
        broken = [e for e in idx if e["name"] == "broken"]
        assert broken and broken[0]["state"] == "UNAVAILABLE"
        assert "config.pbtxt" in broken[0]["reason"] and "dims" in broken[0]["reason"]
        assert requests.get(s.url + "/v2/models/broken/ready").status_code != 200
        assert requests.get(s.url + "/v2/models/good/ready").status_code == 200
        assert "broken" in s.log()


def test_strict_readiness_false_is_ready_despite_broken_model(tmp_path):
    write_model(tmp_path, "good", identity_config("good"))
    write_model(tmp_path, "broken", BROKEN)
    with Server(tmp_path, ["--exit-on-error=false", "--strict-readiness=false"], wait="ready") as s:
        assert requests.get(s.url + "/v2/health/ready").status_code == 200


def test_cpu_only_flags_are_accepted_and_logged(tmp_path):
    write_model(tmp_path, "good", identity_config("good"))
    with Server(tmp_path, ["--cuda-memory-pool-byte-size=0:1024",
                           "--min-supported-compute-capability=6.0"], wait="ready") as s:
        assert "--cuda-memory-pool-byte-size has no effect" in s.log()


def test_explicit_mode_loads_only_named_models(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    write_model(tmp_path, "b", identity_config("b"))
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=a"], wait="ready") as s:
        assert requests.get(s.url + "/v2/models/a/ready").status_code == 200
        assert requests.get(s.url + "/v2/models/b/ready").status_code != 200
        r = requests.post(s.url + "/v2/repository/models/b/load")
        assert r.status_code == 200, r.text
        assert requests.get(s.url + "/v2/models/b/ready").status_code == 200
        r = requests.post(s.url + "/v2/repository/models/a/unload")
        assert r.status_code == 200, r.text
        assert requests.get(s.url + "/v2/models/a/ready").status_code != 200
        r = requests.post(s.url + "/v2/models/a/infer", json=infer_body([1.0]))
        assert r.status_code in (400, 404, 503) and "a" in r.json()["error"]


def test_load_reports_the_real_reason(tmp_path):
    write_model(tmp_path, "bad", BROKEN.replace("broken", "bad"))
    with Server(tmp_path, ["--model-control-mode=explicit"], wait="ready") as s:
        r = requests.post(s.url + "/v2/repository/models/bad/load")
        assert r.status_code == 400
        assert "dims" in r.json()["error"]
        r = requests.post(s.url + "/v2/repository/models/nope/load")
        assert r.status_code in (400, 404)
        assert "nope" in r.json()["error"]


def test_graceful_shutdown_finishes_request_in_flight(tmp_path):
    write_model(tmp_path, "slow", identity_config(
        "slow", extra='parameters { key: "execute_delay_ms" value { string_value: "1500" } }'))
    s = Server(tmp_path, wait="ready")
    result = {}

    def call():
        r = requests.post(s.url + "/v2/models/slow/infer", json=infer_body([7.0]), timeout=30)
        result["status"], result["body"] = r.status_code, r.json()

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.4)  # the request is executing now
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # draining: not ready, still live, new inferences refused
    assert requests.get(s.url + "/v2/health/ready").status_code == 503
    assert requests.get(s.url + "/v2/health/live").status_code == 200
    r = requests.post(s.url + "/v2/models/slow/infer", json=infer_body([1.0]))
    assert r.status_code == 503
    t.join(30)
    assert result["status"] == 200, result
    assert result["body"]["outputs"][0]["data"] == [7.0]
    assert s.proc.wait(30) == 0


def test_sigint_exits_zero(tmp_path):
    write_model(tmp_path, "good", identity_config("good"))
    s = Server(tmp_path, wait="ready")
    assert s.stop(signal.SIGINT) == 0
