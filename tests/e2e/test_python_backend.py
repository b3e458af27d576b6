"""The Python backend: Triton's model.py API, one process per instance, shared memory,
errors and restarts, BLS, auto-complete, EXECUTION_ENV_PATH, leaks."""
import json
import os
import pathlib
import signal
import struct
import subprocess
import textwrap
import threading
import time

import numpy as np
import pytest
import requests

from harness import Server, identity_config, write_model

ROOT = pathlib.Path(__file__).resolve().parents[2]

WIRE = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64,
        "UINT8": np.uint8, "BOOL": np.bool_, "FP16": np.float16, "INT8": np.int8}


def python_model(repo, name, code, config, versions=(1,), files=None):
    files = dict(files or {})
    for v in versions:
        files[f"{v}/model.py"] = textwrap.dedent(code)
    return write_model(repo, name, config, versions=versions, files=files)


def io(name, dtype, dims):
    return f'{{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}'


def cfg(name, inputs, outputs, max_batch_size=0, extra=""):
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
            f'input [ {", ".join(inputs)} ]\noutput [ {", ".join(outputs)} ]\n{extra}\n')


def to_bytes_payload(values):
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def from_bytes_payload(buf):
    out, pos = [], 0
    while pos < len(buf):
        n = struct.unpack_from("<I", buf, pos)[0]
        out.append(bytes(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


def infer(s, model, inputs, outputs=None, params=None, timeout=60):
    """Binary-extension request. inputs: {name: (np array or list of bytes, wire type)}.
    Returns (status code, {name: array} or error text)."""
    header = {"inputs": [], "outputs": [{"name": o, "parameters": {"binary_data": True}}
                                        for o in (outputs or [])]}
    if params:
        header["parameters"] = params
    blobs = []
    for name, (value, wire) in inputs.items():
        if wire == "BYTES":
            data = to_bytes_payload(value)
            shape = [len(value)]
        else:
            arr = np.ascontiguousarray(value, dtype=WIRE[wire])
            data = arr.tobytes()
            shape = list(arr.shape)
        header["inputs"].append({"name": name, "shape": shape, "datatype": wire,
                                 "parameters": {"binary_data_size": len(data)}})
        blobs.append(data)
    if not outputs:
        header["parameters"] = {**(params or {}), "binary_data_output": True}
    head = json.dumps(header).encode()
    r = requests.post(f"{s.url}/v2/models/{model}/infer", data=head + b"".join(blobs),
                      headers={"Inference-Header-Content-Length": str(len(head))},
                      timeout=timeout)
    if r.status_code != 200:
        try:
            return r.status_code, r.json().get("error", r.text)
        except ValueError:
            return r.status_code, r.text
    hlen = int(r.headers.get("Inference-Header-Content-Length", len(r.content)))
    rh = json.loads(r.content[:hlen])
    pos = hlen
    result = {}
    for o in rh["outputs"]:
        size = o["parameters"]["binary_data_size"]
        raw = r.content[pos:pos + size]
        pos += size
        if o["datatype"] == "BYTES":
            result[o["name"]] = from_bytes_payload(raw)
        else:
            result[o["name"]] = np.frombuffer(raw, dtype=WIRE[o["datatype"]]).reshape(o["shape"])
    result["__parameters__"] = rh.get("parameters", {})
    return 200, result


def ok(pair):
    code, result = pair
    assert code == 200, result
    return result


def stubs_of(server_pid):
    """pids of stub.py processes whose parent is server_pid."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server_pid and b"stub.py" in cmd:
            out.append(int(d.name))
    return sorted(out)


def concurrently(fn, n):
    """Runs fn(0) .. fn(n-1) on n threads at once; returns the exceptions they raised."""
    raised = []

    def run(k):
        try:
            fn(k)
        except Exception as e:  # noqa: BLE001 - reported to the caller's assert
            raised.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return raised


def wait_until(pred, timeout=20, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


ADD_SUB = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        self.model_config = json.loads(args["model_config"])
        c = pb_utils.get_output_config_by_name(self.model_config, "OUTPUT0")
        self.out0_dtype = pb_utils.triton_string_to_numpy(c["data_type"])
        pb_utils.Logger.log_info("add_sub initialized: " + args["model_instance_name"])

    def execute(self, requests):
        responses = []
        for request in requests:
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out0 = pb_utils.Tensor("OUTPUT0", (in0 + in1).astype(self.out0_dtype))
            out1 = pb_utils.Tensor("OUTPUT1", (in0 - in1).astype(self.out0_dtype))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out0, out1]))
        return responses

    def finalize(self):
        pb_utils.Logger.log_info("add_sub finalized")
"""

API = """
import json
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.args = args

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X")
            info = {
                "args": self.args,
                "request_id": request.request_id(),
                "correlation_id": request.correlation_id(),
                "requested": request.requested_output_names(),
                "parameters": json.loads(request.parameters()),
                "flags": request.flags(),
                "name": x.name(),
                "shape": x.shape(),
                "pid": os.getpid(),
                "n_requests": len(requests),
                "np_fp32": pb_utils.numpy_to_triton_type(np.float32),
                "str_fp32": str(pb_utils.triton_string_to_numpy("TYPE_FP32")),
                "final": pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                "writable_view": bool(x.as_numpy().base is not None),
            }
            pb_utils.Logger.log_warn("api model saw request " + request.request_id())
            pb_utils.Logger.log_verbose("verbose line")
            out = pb_utils.Tensor("INFO", np.array([json.dumps(info).encode()], dtype=np.object_))
            y = pb_utils.Tensor("Y", x.as_numpy() * 2)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out, y]))
        return responses
"""


def api_config(name="api", extra=""):
    return cfg(name, [io("X", "TYPE_FP32", [-1])],
               [io("INFO", "TYPE_STRING", [1]), io("Y", "TYPE_FP32", [-1])], extra=extra)


def test_add_sub_and_api_surface(tmp_path):
    python_model(tmp_path, "add_sub", ADD_SUB,
                 cfg("add_sub", [io("INPUT0", "TYPE_FP32", [4]), io("INPUT1", "TYPE_FP32", [4])],
                     [io("OUTPUT0", "TYPE_FP32", [4]), io("OUTPUT1", "TYPE_FP32", [4])]))
    python_model(tmp_path, "api", API, api_config())
    with Server(tmp_path, wait="ready") as s:
        a = np.array([1, 2, 3, 4], np.float32)
        b = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
        r = ok(infer(s, "add_sub", {"INPUT0": (a, "FP32"), "INPUT1": (b, "FP32")}))
        np.testing.assert_array_equal(r["OUTPUT0"], a + b)
        np.testing.assert_array_equal(r["OUTPUT1"], a - b)
        # Only the requested output comes back.
        r = ok(infer(s, "add_sub", {"INPUT0": (a, "FP32"), "INPUT1": (b, "FP32")},
                     outputs=["OUTPUT1"]))
        assert "OUTPUT0" not in r and "OUTPUT1" in r

        # JSON request with id, parameters; the model sees them.
        body = {"id": "req-7", "parameters": {"temperature": "hot", "n": 3},
                "inputs": [{"name": "X", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}
        resp = requests.post(f"{s.url}/v2/models/api/infer", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        outs = {o["name"]: o for o in resp.json()["outputs"]}
        info = json.loads(outs["INFO"]["data"][0])
        assert outs["Y"]["data"] == [2, 4, 6]
        args = info["args"]
        assert args["model_name"] == "api" and args["model_version"] == "1"
        assert args["model_instance_kind"] == "CPU" and args["model_instance_device_id"] == "0"
        assert args["model_instance_name"].startswith("api")
        assert pathlib.Path(args["model_repository"]) == tmp_path / "api"
        assert json.loads(args["model_config"])["name"] == "api"
        assert json.loads(args["model_config"])["input"][0]["dims"] == [-1]
        assert info["request_id"] == "req-7"
        assert info["parameters"]["temperature"] == "hot" and info["parameters"]["n"] == 3
        assert sorted(info["requested"]) == ["INFO", "Y"]
        assert info["name"] == "X" and info["shape"] == [3]
        assert info["np_fp32"] == 11 and "float32" in info["str_fp32"]
        assert info["final"] == 1
        assert info["writable_view"]  # the input is a view of shared memory, not a copy
        assert info["pid"] != s.proc.pid
        log = s.log()
        assert "add_sub initialized" in log and "api model saw request req-7" in log
    assert "add_sub finalized" in s.log()


LEVELS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        logger = pb_utils.Logger
        logger.log("level default")
        logger.log("level info", logger.INFO)
        logger.log("level warning", logger.WARNING)
        logger.log("level error", pb_utils.LogLevel.ERROR)
        logger.log("level verbose", logger.VERBOSE)
        out = []
        for r in requests:
            cancelled = int(r.is_cancelled())
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", np.array([cancelled], np.int32))],
                parameters={"seen": r.request_id(), "n": 3, "ok": True}))
        return out
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_logger_levels_response_parameters_is_cancelled(tmp_path, verbose):
    python_model(tmp_path, "levels", LEVELS,
                 cfg("levels", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_INT32", [1])]))
    args = ["--log-verbose=1"] if verbose else []
    with Server(tmp_path, wait="ready", args=args) as s:
        body = {"id": "r1", "inputs": [{"name": "X", "shape": [1], "datatype": "FP32",
                                        "data": [0]}]}
        resp = requests.post(f"{s.url}/v2/models/levels/infer", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        j = resp.json()
        assert j["outputs"][0]["data"] == [0]  # is_cancelled(): nobody cancelled it
        assert j["parameters"] == {"seen": "r1", "n": 3, "ok": True}
        lines = s.log().splitlines()

        def level_of(text):
            found = [ln for ln in lines if ln.endswith(text)]
            return found[0][0] if found else None
        assert level_of("level default") == "I" and level_of("level info") == "I"
        assert level_of("level warning") == "W" and level_of("level error") == "E"
        assert level_of("level verbose") == ("D" if verbose else None)  # flowserve marks verbose D


BYTES_ECHO = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            t = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            assert t.dtype == np.object_, t.dtype
            out = np.array([x.upper() + b"!" for x in t.reshape(-1)], dtype=np.object_)
            lens = np.array([len(x) for x in t.reshape(-1)], dtype=np.int32)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("UPPER", out), pb_utils.Tensor("LEN", lens)]))
        return responses
"""


def test_bytes_tensors(tmp_path):
    python_model(tmp_path, "bytes", BYTES_ECHO,
                 cfg("bytes", [io("TEXT", "TYPE_STRING", [-1])],
                     [io("UPPER", "TYPE_STRING", [-1]), io("LEN", "TYPE_INT32", [-1])]))
    with Server(tmp_path, wait="ready") as s:
        vals = [b"hello", b"", b"\x00\xffbin", "héllo".encode()]
        r = ok(infer(s, "bytes", {"TEXT": (vals, "BYTES")}))
        assert r["UPPER"] == [v.upper() + b"!" for v in vals]
        assert list(r["LEN"]) == [len(v) for v in vals]


BATCH = """
import numpy as np
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.02)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            n = np.full((x.shape[0], 1), len(requests), dtype=np.int32)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", x + 1), pb_utils.Tensor("N", n)]))
        return responses
"""


def test_dynamic_batcher_delivers_one_execute_call(tmp_path):
    python_model(tmp_path, "batch", BATCH,
                 cfg("batch", [io("X", "TYPE_FP32", [2])],
                     [io("Y", "TYPE_FP32", [2]), io("N", "TYPE_INT32", [1])], max_batch_size=8,
                     extra="dynamic_batching { max_queue_delay_microseconds: 50000 }"))
    with Server(tmp_path, wait="ready") as s:
        results = [None] * 8

        def one(i):
            x = np.array([[i, i]], np.float32)
            results[i] = ok(infer(s, "batch", {"X": (x, "FP32")}))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in enumerate(results):
            np.testing.assert_array_equal(r["Y"], [[i + 1, i + 1]])
        assert max(int(r["N"][0][0]) for r in results) > 1


ERRORS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x[0] == 1:
                raise ValueError("execute blew up on purpose")
            if x[0] == 2:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError("bad request: x is 2")))
                continue
            if x[0] == 3:
                return [1, 2, 3]
            if x[0] == 4:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x.astype(np.float64))]))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]))
        return responses
"""


def test_errors_answer_requests_and_model_keeps_serving(tmp_path):
    python_model(tmp_path, "err", ERRORS,
                 cfg("err", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_FP32", [1])]))
    python_model(tmp_path, "badinit", """
        class TritonPythonModel:
            def initialize(self, args):
                raise RuntimeError("cannot find weights.bin")
            def execute(self, requests):
                return []
        """, cfg("badinit", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_FP32", [1])]))
    python_model(tmp_path, "syntax", "def broken(:\n",
                 cfg("syntax", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_FP32", [1])]))
    with Server(tmp_path, args=["--exit-on-error=false"], wait="live") as s:
        wait_until(lambda: requests.get(f"{s.url}/v2/models/err/ready").status_code == 200)
        code, err = infer(s, "err", {"X": (np.array([1], np.float32), "FP32")})
        assert code >= 400 and "ValueError: execute blew up on purpose" in err
        assert "Traceback" in s.log() and "execute blew up on purpose" in s.log()
        code, err = infer(s, "err", {"X": (np.array([2], np.float32), "FP32")})
        assert code >= 400 and err == "bad request: x is 2"
        code, err = infer(s, "err", {"X": (np.array([3], np.float32), "FP32")})
        assert code >= 400 and "one per request" in err
        code, err = infer(s, "err", {"X": (np.array([4], np.float32), "FP32")})
        assert code >= 400 and "FP64" in err and "TYPE_FP32" in err
        r = ok(infer(s, "err", {"X": (np.array([5], np.float32), "FP32")}))
        assert r["Y"][0] == 5

        index = {m["name"]: m for m in requests.post(f"{s.url}/v2/repository/index", json={}).json()}
        assert index["badinit"]["state"] == "UNAVAILABLE"
        assert "RuntimeError: cannot find weights.bin" in index["badinit"]["reason"]
        assert "SyntaxError" in index["syntax"]["reason"]
        assert stubs_of(s.proc.pid) and len(stubs_of(s.proc.pid)) == 1  # failed loads left none


ROGUE = """
import numpy as np
import triton_python_backend_utils as pb_utils

# What the process's reply carries instead of the real one, by the request's X: model.py
# runs in the process and can reach the socket, so the server checks every description.
CRAFTED = {
    1: [[["Y", "FP32", [1], "i", 0, 4096]]],          # past the frame's end
    2: [[{"n": "Y", "t": "FP32", "s": [1], "l": ["i", 0, 4]}]],  # not a description
    3: [[["Y", "FP32", [1], "z", 0, 4]]],              # no such place
    4: [[["Y", "FP32", [2], "i", 0, 4]]],              # size and shape disagree
    5: [[["Y", "FP32", [1], "a", 999, 0, 4]]],         # another batch's arena
    6: "not a list",
}


class TritonPythonModel:
    def execute(self, requests):
        x = int(pb_utils.get_input_tensor_by_name(requests[0], "X").as_numpy()[0])
        if x in CRAFTED:
            ch = pb_utils._ipc.ch

            def once(msg, *args, **kwargs):
                del ch.send  # back to the class's method
                if msg.get("op") == "done":
                    msg = {"op": "done", "r": [CRAFTED[x]] * len(requests)}
                return ch.send(msg, *args, **kwargs)
            ch.send = once
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]) for r in requests]
"""


def test_corrupt_replies_from_the_process_fail_only_their_requests(tmp_path):
    python_model(tmp_path, "rogue", ROGUE,
                 cfg("rogue", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_FP32", [1])]))
    with Server(tmp_path, wait="ready") as s:
        pid = stubs_of(s.proc.pid)
        expected = {1: "lies outside its buffer", 2: "malformed tensor description",
                    3: "bad location", 4: "4 bytes for shape [2]",
                    5: "not its batch's", 6: "malformed response"}
        for x, text in expected.items():
            code, err = infer(s, "rogue", {"X": (np.array([x], np.float32), "FP32")})
            assert code == 500 and text in err, (x, code, err)
            # The same process goes on serving: nothing was restarted.
            r = ok(infer(s, "rogue", {"X": (np.array([0.5], np.float32), "FP32")}))
            assert r["Y"][0] == 0.5
        assert stubs_of(s.proc.pid) == pid
        assert "restarting" not in s.log()


CRASHY = """
import os
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if x[0] == -1:
                os._exit(3)
            if x[0] == -2:
                time.sleep(60)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("PID", np.array([os.getpid()], dtype=np.int64))]))
        return responses
"""


def test_crash_restart_and_give_up(tmp_path):
    python_model(tmp_path, "crashy", CRASHY,
                 cfg("crashy", [io("X", "TYPE_FP32", [1])], [io("PID", "TYPE_INT64", [1])]))
    with Server(tmp_path, args=["--model-control-mode=explicit", "--load-model=crashy"],
                wait="ready") as s:
        x = {"X": (np.array([0], np.float32), "FP32")}
        pid1 = int(ok(infer(s, "crashy", x))["PID"][0])
        # A process killed while idle is replaced; the next request is served.
        os.kill(pid1, signal.SIGKILL)
        pid2 = wait_until(lambda: (lambda p: p if p and p != [pid1] else None)(stubs_of(s.proc.pid)))
        assert pid2 and pid1 not in pid2
        pid2 = int(ok(infer(s, "crashy", x))["PID"][0])
        assert pid2 != pid1
        assert "restarting" in s.log()
        # A process dying under a request answers it at once with an error.
        t0 = time.time()
        code, err = infer(s, "crashy", {"X": (np.array([-1], np.float32), "FP32")})
        assert code >= 400 and "exited with status 3" in err
        assert time.time() - t0 < 5
        # Third death within a minute: no more restarts, requests fail with the reason.
        wait_until(lambda: stubs_of(s.proc.pid))
        code, err = infer(s, "crashy", {"X": (np.array([-1], np.float32), "FP32")})
        assert code >= 400
        code, err = infer(s, "crashy", x)
        assert code >= 400 and "died 3 times" in err, err
        assert stubs_of(s.proc.pid) == []
        # The version is marked UNAVAILABLE with the reason; the model is not ready.
        index = {m["name"]: m for m in requests.post(f"{s.url}/v2/repository/index",
                                                     json={}).json()}
        assert index["crashy"]["state"] == "UNAVAILABLE"
        assert "died 3 times" in index["crashy"]["reason"]
        assert requests.get(f"{s.url}/v2/models/crashy/ready").status_code != 200
        # Loading it again brings it back.
        requests.post(f"{s.url}/v2/repository/models/crashy/unload", timeout=60)
        r = requests.post(f"{s.url}/v2/repository/models/crashy/load", timeout=60)
        assert r.status_code == 200, r.text
        ok(infer(s, "crashy", x))


def test_kill_during_execute_answers_at_once(tmp_path):
    python_model(tmp_path, "slow", CRASHY,
                 cfg("slow", [io("X", "TYPE_FP32", [1])], [io("PID", "TYPE_INT64", [1])]))
    with Server(tmp_path, wait="ready") as s:
        pid = int(ok(infer(s, "slow", {"X": (np.array([0], np.float32), "FP32")}))["PID"][0])
        result = {}

        def call():
            result["r"] = infer(s, "slow", {"X": (np.array([-2], np.float32), "FP32")})
            result["t"] = time.time()

        th = threading.Thread(target=call)
        th.start()
        time.sleep(0.5)  # the request is inside execute(), sleeping
        os.kill(pid, signal.SIGKILL)
        t_kill = time.time()
        th.join(30)
        code, err = result["r"]
        assert code >= 400 and "killed by signal 9" in err, err
        assert result["t"] - t_kill < 2
        # Restarted: served again by a new process.
        pid2 = int(ok(infer(s, "slow", {"X": (np.array([0], np.float32), "FP32")}))["PID"][0])
        assert pid2 != pid


LOOP_MODEL = """
import os
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            v = float(x[0, 0])
            if v > 0:
                time.sleep(v)
            if v == -1:  # BLS: the server answers it while this batch is under way
                bls = pb_utils.InferenceRequest(
                    model_name="ident", inputs=[pb_utils.Tensor("INPUT0", x)],
                    requested_output_names=["OUTPUT0"])
                x = bls.exec().output_tensors()[0].as_numpy()
            if v == -2:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("minus two")))
                continue
            pb_utils.Logger.log_verbose("pyloop batch of %d" % len(requests))
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", x * 2), pb_utils.Tensor("PID", np.array([[os.getpid()]]))]))
        return out
"""


def test_io_thread_serves_while_a_python_batch_runs(tmp_path):
    # Several clients of a Python model: the requests an HTTP I/O thread
    # reads in one turn go to the process as one batch, and the thread goes back to its
    # other connections until the reply comes (a second batch may follow the first). So
    # a batch that turns slow holds up nobody else on that thread; a BLS call, log lines
    # and per-request errors travel beside the replies; a process killed under a batch
    # fails it (and the one behind it) at once.
    python_model(tmp_path, "pyloop", LOOP_MODEL,
                 cfg("pyloop", [io("X", "TYPE_FP32", [-1])],
                     [io("Y", "TYPE_FP32", [-1]), io("PID", "TYPE_INT64", [1])],
                     max_batch_size=8, extra="dynamic_batching { }"))
    write_model(tmp_path, "ident", identity_config("ident", max_batch_size=8))
    with Server(tmp_path, args=["--http-thread-count=1", "--log-verbose=1"],
                wait="ready") as s:
        def call(v, n=3):
            x = np.full((1, n), v, np.float32)
            x[0, 1:] = np.arange(1, n)
            return infer(s, "pyloop", {"X": (x, "FP32")}), x

        failures = []

        def client(k):
            for i in range(60):
                v = (-1.0, -2.0, 0.0)[(k + i) % 3] if k < 3 else 0.0
                (code, r), x = call(v, 2 + (k + i) % 5)
                if v == -2:
                    if code != 500 or "minus two" not in str(r):
                        failures.append((k, i, code, r))
                elif code != 200 or not np.array_equal(r["Y"], x * 2):
                    failures.append((k, i, code, r))
        raised = concurrently(client, 8)
        assert not raised and not failures, (raised, failures[:5])
        assert "pyloop batch of" in s.log()

        # Another client keeps the Python model's ones from looking alone (a lone client's
        # requests run on the I/O thread itself, waiting, when the model is cheap).
        stop = threading.Event()
        others = []

        def other_client():
            while not stop.is_set():
                others.append(infer(s, "ident", {"INPUT0": (np.ones((1, 2), np.float32),
                                                            "FP32")})[0])
                time.sleep(0.002)
        background = threading.Thread(target=other_client)
        background.start()
        assert not concurrently(lambda k: [ok(call(0.0)[0]) for _ in range(20)], 2)

        # A batch that sleeps 3 s: meanwhile the thread answers other connections.
        slow = {}

        def slow_call():
            slow["r"] = call(3.0)

        th = threading.Thread(target=slow_call)
        th.start()
        time.sleep(0.5)
        t0 = time.time()
        assert requests.get(f"{s.url}/v2/health/ready", timeout=30).status_code == 200
        ok(infer(s, "ident", {"INPUT0": (np.ones((1, 4), np.float32), "FP32")}))
        waited = time.time() - t0
        th.join(30)
        (code, r), x = slow["r"]
        assert code == 200 and np.array_equal(r["Y"], x * 2), r
        assert waited < 1.5, f"the I/O thread was held {waited:.2f} s by the Python batch"

        # Killed under a slow batch, with another one behind it: both fail at once.
        pid = int(ok(call(0.0)[0])["PID"][0])
        assert not concurrently(lambda k: [ok(call(0.0)[0]) for _ in range(10)], 2)
        results = {}

        def call_into(key, v):
            results[key] = call(v)[0]
            results[key + "_t"] = time.time()

        ths = [threading.Thread(target=call_into, args=("a", 5.0))]
        ths[0].start()
        time.sleep(0.3)
        ths.append(threading.Thread(target=call_into, args=("b", 0.0)))
        ths[1].start()
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        t_kill = time.time()
        for t in ths:
            t.join(30)
        stop.set()
        background.join(30)
        assert others and set(others) == {200}, set(others)
        for key in ("a", "b"):
            code, err = results[key]
            assert code >= 400 and "killed by signal 9" in str(err), (key, code, err)
            assert results[key + "_t"] - t_kill < 2, key
        # Restarted: a new process serves.
        assert wait_until(lambda: call(0.0)[0][0] == 200)
        assert int(ok(call(0.0)[0])["PID"][0]) != pid


def test_polling_stub_serves_and_unloads_at_once(tmp_path):
    # A poll window far longer than the test: the process is still polling its socket
    # when the next requests come and when the unload's finalize comes; both must be
    # read at once (the poll only stands in for the blocking read).
    python_model(tmp_path, "m", CRASHY,
                 cfg("m", [io("X", "TYPE_FP32", [1])], [io("PID", "TYPE_INT64", [1])]))
    with Server(tmp_path, args=["--model-control-mode=explicit", "--load-model=m",
                                "--backend-config=python,stub-spin-microseconds=30000000"],
                wait="ready") as s:
        x = {"X": (np.array([0], np.float32), "FP32")}
        pids = {int(ok(infer(s, "m", x))["PID"][0]) for _ in range(20)}
        assert len(pids) == 1
        t0 = time.time()
        r = requests.post(f"{s.url}/v2/repository/models/m/unload", timeout=60)
        assert r.status_code == 200, r.text
        assert wait_until(lambda: not stubs_of(s.proc.pid), timeout=10)
        assert time.time() - t0 < 3  # finalize answered, not the 5 s kill timeout
        assert "did not return" not in s.log()
        assert not pathlib.Path(f"/proc/{pids.pop()}/cmdline").exists()


def test_no_process_left_after_server_sigkill(tmp_path):
    python_model(tmp_path, "m", CRASHY,
                 cfg("m", [io("X", "TYPE_FP32", [1])], [io("PID", "TYPE_INT64", [1])],
                     extra="instance_group [ { count: 2 kind: KIND_CPU } ]"))
    s = Server(tmp_path, wait="ready")
    stubs = stubs_of(s.proc.pid)
    assert len(stubs) == 2
    s.stop(signal.SIGKILL)
    assert wait_until(lambda: not any(pathlib.Path(f"/proc/{p}").exists() and
                                      "Z" not in (pathlib.Path(f"/proc/{p}/stat").read_text()
                                                  .rsplit(")", 1)[1].split()[0])
                                      for p in stubs), timeout=10)
    # Graceful exit too (finalize runs, processes reaped).
    s = Server(tmp_path, wait="ready")
    stubs = stubs_of(s.proc.pid)
    assert s.stop(signal.SIGTERM) == 0
    assert not any(pathlib.Path(f"/proc/{p}").exists() for p in stubs)


HANGING_FINALIZE = ADD_SUB.replace('pb_utils.Logger.log_info("add_sub finalized")',
                                   'import time; time.sleep(3600)')


def test_finalize_is_bounded(tmp_path):
    python_model(tmp_path, "hang", HANGING_FINALIZE,
                 cfg("hang", [io("INPUT0", "TYPE_FP32", [4]), io("INPUT1", "TYPE_FP32", [4])],
                     [io("OUTPUT0", "TYPE_FP32", [4]), io("OUTPUT1", "TYPE_FP32", [4])]))
    with Server(tmp_path, args=["--model-control-mode=explicit", "--load-model=hang",
                                "--backend-config=python,finalize-timeout-seconds=1"],
                wait="ready") as s:
        stubs = stubs_of(s.proc.pid)
        t0 = time.time()
        r = requests.post(f"{s.url}/v2/repository/models/hang/unload", timeout=60)
        assert r.status_code == 200
        assert wait_until(lambda: not any(pathlib.Path(f"/proc/{p}").exists() for p in stubs))
        assert time.time() - t0 < 10
        assert "did not return within" in s.log()


BLS = """
import asyncio
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X")
            raw = pb_utils.get_input_tensor_by_name(request, "TARGET").as_numpy()[0]
            target = raw.decode()
            in_name, out_name = {"torch": ("INPUT__0", "OUTPUT__0"),
                                 "ens": ("EX", "EY"), "missing": ("A", "B")}[target]
            bls = pb_utils.InferenceRequest(
                # The bytes of a BYTES element name a model too (Triton's BLS example).
                model_name=raw if target != "torch" else "torch_affine",
                requested_output_names=[out_name],
                inputs=[pb_utils.Tensor(in_name, x.as_numpy().reshape(1, -1) if target == "torch"
                                        else x.as_numpy())])
            r = bls.exec()
            if r.has_error():
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("BLS failed: " + r.error().message())))
                continue
            y = pb_utils.get_output_tensor_by_name(r, out_name).as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y.reshape(-1))]))
        return responses
"""

BLS_ASYNC = """
import asyncio
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            futures = [pb_utils.InferenceRequest(
                model_name="ens", requested_output_names=["EY"],
                inputs=[pb_utils.Tensor("EX", x * k)]).async_exec() for k in (1, 2, 3)]
            results = await asyncio.gather(*futures)
            ys = [pb_utils.get_output_tensor_by_name(r, "EY").as_numpy() for r in results]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", sum(ys))]))
        return responses
"""


def test_bls_to_torchscript_and_ensemble(tmp_path):
    torch = pytest.importorskip("torch")
    from models_torch import Affine, _save, config as torch_config, tensor_io
    module = Affine(4, 3)
    _save(module, tmp_path, "torch_affine",
          torch_config("torch_affine", [tensor_io("INPUT__0", "TYPE_FP32", [4])],
                       [tensor_io("OUTPUT__0", "TYPE_FP32", [3])], max_batch_size=4))
    write_model(tmp_path, "ident", identity_config("ident", dims="[ 4 ]"))
    write_model(tmp_path, "ens", f"""
name: "ens"
platform: "ensemble"
max_batch_size: 0
input [ {io("EX", "TYPE_FP32", [4])} ]
output [ {io("EY", "TYPE_FP32", [4])} ]
ensemble_scheduling {{ step [ {{ model_name: "ident" model_version: -1
  input_map {{ key: "INPUT0" value: "EX" }} output_map {{ key: "OUTPUT0" value: "EY" }} }} ] }}
""")
    python_model(tmp_path, "bls", BLS,
                 cfg("bls", [io("X", "TYPE_FP32", [-1]), io("TARGET", "TYPE_STRING", [1])],
                     [io("Y", "TYPE_FP32", [-1])]))
    python_model(tmp_path, "bls_async", BLS_ASYNC,
                 cfg("bls_async", [io("X", "TYPE_FP32", [4])], [io("Y", "TYPE_FP32", [4])]))
    with Server(tmp_path, wait="ready") as s:
        x = np.array([[0.1, -0.2, 0.3, 0.4]], np.float32)
        r = ok(infer(s, "bls", {"X": (x[0], "FP32"), "TARGET": ([b"torch"], "BYTES")}))
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy().reshape(-1)
        np.testing.assert_allclose(r["Y"], want, rtol=1e-5, atol=1e-6)
        r = ok(infer(s, "bls", {"X": (x[0], "FP32"), "TARGET": ([b"ens"], "BYTES")}))
        np.testing.assert_array_equal(r["Y"], x[0])
        code, err = infer(s, "bls", {"X": (x[0], "FP32"), "TARGET": ([b"missing"], "BYTES")})
        assert code >= 400 and "BLS failed" in err and "missing" in err
        r = ok(infer(s, "bls_async", {"X": (x[0], "FP32")}))
        np.testing.assert_allclose(r["Y"], x[0] * 6, rtol=1e-6)


AUTO = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        config = auto_complete_model_config.as_dict()
        names = [i["name"] for i in config["input"]]
        if "IN" not in names:
            auto_complete_model_config.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [3]})
        auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_INT32", "dims": [3]})
        auto_complete_model_config.set_max_batch_size(4)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 10)]) for r in requests]
"""


def test_auto_complete_config(tmp_path):
    python_model(tmp_path, "auto", AUTO, 'name: "auto"\nbackend: "python"\n')
    # As Triton's auto_complete example deploys it: no config.pbtxt at all, model.py says
    # it is a Python model, and as_dict() still has (empty) input and output lists.
    python_model(tmp_path, "noconfig", AUTO, None)
    with Server(tmp_path, wait="ready", args=["--strict-model-config=false"]) as s:
        for name in ("auto", "noconfig"):
            c = requests.get(f"{s.url}/v2/models/{name}/config").json()
            assert c["name"] == name and c["backend"] == "python"
            assert c["max_batch_size"] == 4
            assert [(i["name"], i["data_type"], i["dims"]) for i in c["input"]] == [
                ("IN", "TYPE_INT32", [3])]
            assert [o["name"] for o in c["output"]] == ["OUT"]
            assert "dynamic_batching" in c
            r = ok(infer(s, name, {"IN": (np.array([[1, 2, 3]], np.int32), "INT32")}))
            np.testing.assert_array_equal(r["OUT"], [[10, 20, 30]])


DLPACK = """
import json
from torch.utils import dlpack
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        c = pb_utils.get_input_config_by_name(json.loads(args["model_config"]), "X")
        self.dtype = pb_utils.triton_string_to_numpy(c["data_type"])

    def execute(self, requests):
        out = []
        for r in requests:
            t = dlpack.from_dlpack(pb_utils.get_input_tensor_by_name(r, "X").to_dlpack())
            y = pb_utils.Tensor.from_dlpack("Y", dlpack.to_dlpack((t * 3).to(t.dtype)))
            assert y.as_numpy().dtype == self.dtype
            out.append(pb_utils.InferenceResponse([y]))
        return out
"""

AUTO_DECOUPLED = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.set_model_transaction_policy({"decoupled": True})
        return auto_complete_model_config

    def execute(self, requests):
        for r in requests:
            sender = r.get_response_sender()
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.array([1], np.int32))]),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def test_dlpack_and_transaction_policy_from_auto_complete(tmp_path):
    pytest.importorskip("torch")
    python_model(tmp_path, "dl", DLPACK,
                 cfg("dl", [io("X", "TYPE_FP32", [-1])], [io("Y", "TYPE_FP32", [-1])]))
    python_model(tmp_path, "autodec", AUTO_DECOUPLED,
                 cfg("autodec", [io("X", "TYPE_INT32", [1])], [io("Y", "TYPE_INT32", [1])]))
    with Server(tmp_path, wait="ready") as s:
        x = np.array([1.5, -2, 4], np.float32)
        r = ok(infer(s, "dl", {"X": (x, "FP32")}))
        np.testing.assert_array_equal(r["Y"], x * 3)
        c = requests.get(f"{s.url}/v2/models/autodec/config").json()
        assert c["model_transaction_policy"]["decoupled"] is True
        code, err = infer(s, "autodec", {"X": (np.array([1], np.int32), "INT32")})
        assert code == 501 and "decoupled transaction policy" in err


def test_execution_env_path(tmp_path):
    env = tmp_path / "envs" / "myenv" / "lib" / "python3.11" / "site-packages"
    env.mkdir(parents=True)
    (env / "flowserve_test_dep.py").write_text("VALUE = 41\n")
    python_model(tmp_path / "repo", "envm", """
        import numpy as np
        import triton_python_backend_utils as pb_utils
        import flowserve_test_dep

        class TritonPythonModel:
            def execute(self, requests):
                return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "Y", np.array([flowserve_test_dep.VALUE + 1], np.int32))]) for r in requests]
        """, cfg("envm", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_INT32", [1])],
                 extra=f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: '
                       f'"{tmp_path}/envs/myenv" }} }}'))
    with Server(tmp_path / "repo", wait="ready") as s:
        r = ok(infer(s, "envm", {"X": (np.array([0], np.float32), "FP32")}))
        assert r["Y"][0] == 42


def test_execution_env_path_packed(tmp_path):
    # Triton's guide packs the environment with conda-pack into a .tar.gz beside the model;
    # it is unpacked once into $TMPDIR/flowserve-python-envs and put on sys.path.
    def pack(archive, value):
        staging = tmp_path / f"staging{value}"
        sp = staging / "lib" / "python3.11" / "site-packages"
        sp.mkdir(parents=True)
        (sp / "flowserve_packed_dep.py").write_text(f"VALUE = {value}\n")
        (staging / "bin").mkdir()
        subprocess.run(["tar", "-czf", str(archive), "-C", str(staging), "lib", "bin"], check=True)

    model = """
        import numpy as np
        import triton_python_backend_utils as pb_utils
        import flowserve_packed_dep

        class TritonPythonModel:
            def execute(self, requests):
                return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "Y", np.array([flowserve_packed_dep.VALUE], np.int32))]) for r in requests]
        """
    env_param = ('parameters: { key: "EXECUTION_ENV_PATH" value: { string_value: '
                 '"$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }')
    repo = tmp_path / "repo"
    python_model(repo, "packed", model,
                 cfg("packed", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_INT32", [1])],
                     extra=env_param))
    python_model(repo, "broken", model,
                 cfg("broken", [io("X", "TYPE_FP32", [1])], [io("Y", "TYPE_INT32", [1])],
                     extra=env_param))
    pack(repo / "packed" / "env.tar.gz", 7)
    (repo / "broken" / "env.tar.gz").write_bytes(b"not a gzip file")
    cache = tmp_path / "tmp"
    cache.mkdir()
    env = {**os.environ, "TMPDIR": str(cache)}
    x = {"X": (np.array([0], np.float32), "FP32")}
    with Server(repo, env=env, args=["--model-control-mode=explicit", "--load-model=*",
                                     "--exit-on-error=false"]) as s:
        wait_until(lambda: requests.get(f"{s.url}/v2/models/packed/ready").status_code == 200)
        assert ok(infer(s, "packed", x))["Y"][0] == 7
        # The broken archive fails that model alone, saying which file and why.
        r = requests.post(f"{s.url}/v2/repository/index", json={}).json()
        broken = next(m for m in r if m["name"] == "broken")
        assert broken["state"] == "UNAVAILABLE", broken
        assert "env.tar.gz" in broken["reason"] and "unpacking failed" in broken["reason"], broken
        unpacked = [p for p in (cache / "flowserve-python-envs").iterdir()]
        assert len(unpacked) == 1, unpacked  # no scratch folder left by the failed one
        # A reload reuses the unpacked folder; a rebuilt archive gets a folder of its own.
        assert requests.post(f"{s.url}/v2/repository/models/packed/load").status_code == 200
        assert len(list((cache / "flowserve-python-envs").iterdir())) == 1
        time.sleep(0.01)
        (repo / "packed" / "env.tar.gz").unlink()
        pack(repo / "packed" / "env.tar.gz", 8)
        assert requests.post(f"{s.url}/v2/repository/models/packed/load").status_code == 200
        assert ok(infer(s, "packed", x))["Y"][0] == 8


IDENT = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""


def memfd_sizes(pid, name):
    """Sizes of the memfd mappings called `name` in process `pid`."""
    sizes = []
    for line in pathlib.Path(f"/proc/{pid}/maps").read_text().splitlines():
        if f"memfd:{name}" in line:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            sizes.append(hi - lo)
    return sizes


def grpc_infer_stub(s):
    import grpc
    import grpc_stubs
    pb2, pb2_grpc = grpc_stubs.load()
    return pb2, pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(
        s.grpc_url, options=[("grpc.max_receive_message_length", 64 << 20),
                             ("grpc.max_send_message_length", 64 << 20)]))


def test_large_tensor_round_trip(tmp_path):
    python_model(tmp_path, "pyid", IDENT,
                 cfg("pyid", [io("INPUT0", "TYPE_UINT8", [-1])], [io("OUTPUT0", "TYPE_UINT8", [-1])]))
    growth = 257 * 4096  # an odd step, to recognise the arena's size by it
    with Server(tmp_path, wait="ready", args=["--backend-config=python,shm-default-byte-size=2097152",
                                              f"--backend-config=python,shm-growth-byte-size={growth}"]) as s:
        def arena_sizes():
            return set(memfd_sizes(s.proc.pid, "flowserve-python"))
        # Over HTTP, bodies of 64 KiB and more are read into shareable memory, which the
        # process maps: their inputs never reach the arena, however large.
        for size in (0, 1, 1000, 100_000, 4 << 20, 9 << 20, 3):
            x = np.random.randint(0, 255, size, dtype=np.uint8)
            r = ok(infer(s, "pyid", {"INPUT0": (x, "UINT8")}))
            np.testing.assert_array_equal(r["OUTPUT0"], x)
            assert arena_sizes() == {2097152}, (size, arena_sizes())
        # gRPC requests live in the server's heap: copied into the arena, which starts at
        # shm-default-byte-size and grows in steps of shm-growth-byte-size. The output
        # points into it, so the previous arena may still be held by the last response when
        # a larger one is made: it goes later.
        pb2, stub = grpc_infer_stub(s)
        for size in (4 << 20, 9 << 20, 3):
            x = np.random.randint(0, 255, size, dtype=np.uint8)
            req = pb2.ModelInferRequest(model_name="pyid")
            req.inputs.append(pb2.ModelInferRequest.InferInputTensor(
                name="INPUT0", datatype="UINT8", shape=[size]))
            req.raw_input_contents.append(x.tobytes())
            resp = stub.ModelInfer(req, timeout=60)
            np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], np.uint8), x)
            if size == 4 << 20:
                grown = -(-(4 << 20) // growth) * growth
                assert max(arena_sizes()) == grown, arena_sizes()
                assert arena_sizes() <= {2097152, grown}, arena_sizes()


def view_model(repo):
    """pyview: returns its input, a slice of it (both views: no copy) and a reversed
    piece (not a plain view: copied, small enough to travel inline); 2 instances, batching."""
    python_model(repo, "pyview", """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", x),
                pb_utils.Tensor("OUTPUT1", x[:, 1:]),
                pb_utils.Tensor("OUTPUT2", x[:, :16][:, ::-1]),  # not a plain view: copied
            ]))
        return out
""", cfg("pyview", [io("INPUT0", "TYPE_UINT8", [-1])],
         [io("OUTPUT0", "TYPE_UINT8", [-1]), io("OUTPUT1", "TYPE_UINT8", [-1]),
          io("OUTPUT2", "TYPE_UINT8", [-1])], max_batch_size=8,
         extra="instance_group [ { count: 2 kind: KIND_CPU } ]\ndynamic_batching { }"))


def hammer_view_model(s, sizes, clients, rounds):
    """`clients` threads call pyview `rounds` times each with inputs of `sizes` holding
    bytes of their own, so a buffer reused too early shows as another request's bytes;
    -> the model's two processes."""
    failures = []

    def client(seed):
        rng = np.random.default_rng(seed)
        for i in range(rounds):
            n = sizes[(seed + i) % len(sizes)]
            x = np.full((1, n), (seed * 37 + i) % 256, dtype=np.uint8)
            x[0, :32] = rng.integers(0, 255, 32)
            x[0, -8:] = rng.integers(0, 255, 8)
            code, r = infer(s, "pyview", {"INPUT0": (x, "UINT8")})
            if (code != 200 or not np.array_equal(r["OUTPUT0"], x)
                    or not np.array_equal(r["OUTPUT1"], x[:, 1:])
                    or not np.array_equal(r["OUTPUT2"], x[:, :16][:, ::-1])):
                failures.append((seed, i, n, code))
    raised = concurrently(client, clients)
    assert not raised and not failures, (raised, failures[:5])
    stubs = stubs_of(s.proc.pid)
    assert len(stubs) == 2, stubs
    return stubs


def test_large_http_inputs_are_mapped_not_copied(tmp_path):
    # A large HTTP body is read into shareable memory; the Python process maps that buffer
    # (once: buffers are pooled and reused) and the input views it, and an output viewing
    # the input goes back by reference into it: no copy on either side. Concurrent clients
    # with distinct bytes and 2 instances would show a buffer reused too early as another
    # request's bytes. More clients than the pool keeps idle make it free buffers, which
    # the processes must unmap too.
    view_model(tmp_path)
    with Server(tmp_path, wait="ready") as s:
        stubs = hammer_view_model(s, (70_000, 1 << 20, 3 << 20, 100_000), 12, 12)
        for pid in stubs:
            # Inputs were never copied into an arena (it stays at its first 1 MiB) and the
            # outputs never into an output segment.
            assert max(memfd_sizes(pid, "flowserve-python")) == 1 << 20, memfd_sizes(pid, "flowserve-python")
            assert not memfd_sizes(pid, "flowserve-py-out"), "an output viewing an input was copied"
            assert memfd_sizes(pid, "flowserve-body"), "the process never mapped a request body"
        # The next execute message tells a process which buffers are gone: the one that
        # serves these maps none the server no longer has (an idle one learns at its next
        # request).
        mapped = [len(memfd_sizes(pid, "flowserve-body")) for pid in stubs]
        x = np.arange(200_000, dtype=np.uint8).reshape(1, -1)
        for _ in range(8):
            np.testing.assert_array_equal(ok(infer(s, "pyview", {"INPUT0": (x, "UINT8")}))["OUTPUT0"], x)
        server_buffers = len(memfd_sizes(s.proc.pid, "flowserve-body"))
        assert server_buffers <= 9, server_buffers  # the pool's idle ones and the one in use
        now = [len(memfd_sizes(pid, "flowserve-body")) for pid in stubs]
        assert min(now) <= server_buffers, (mapped, now, server_buffers)


def test_pooled_output_segments_are_not_reused_while_being_sent(tmp_path):
    # Outputs above the inline size travel in the stub's pooled segments; a segment may
    # only be handed out again once the responses pointing into it were written out.
    # Several clients with outputs of their own make any early reuse show as a response
    # that holds another request's bytes.
    python_model(tmp_path, "pyneg", """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() ^ 0xFF)])
            for r in requests]
""", cfg("pyneg", [io("INPUT0", "TYPE_UINT8", [-1])], [io("OUTPUT0", "TYPE_UINT8", [-1])],
         extra="instance_group [ { count: 2 kind: KIND_CPU } ]"))
    with Server(tmp_path, wait="ready") as s:
        failures = []

        def client(seed):
            rng = np.random.default_rng(seed)
            for i in range(60):
                x = np.full(100_000 + 4096 * (i % 7), (seed * 61 + i) % 256, dtype=np.uint8)
                x[:8] = rng.integers(0, 255, 8)
                code, r = infer(s, "pyneg", {"INPUT0": (x, "UINT8")}, outputs=["OUTPUT0"])
                if code != 200 or not np.array_equal(r["OUTPUT0"], x ^ 0xFF):
                    failures.append((seed, i, code))
        raised = concurrently(client, 8)
        assert not raised and not failures, (raised, failures[:5])


def test_outputs_viewing_inputs_are_not_copied(tmp_path):
    # An output that views the request's inputs (as_numpy() itself, or a slice) goes back
    # by its place in the input arena: the stub never creates an output segment for it
    # (they would show in its maps as flowserve-py-out). The arena stays reserved while the
    # responses are written out: 8 clients with distinct bytes, 2 instances and batches
    # around the inline size would show any early reuse as another request's bytes.
    view_model(tmp_path)
    with Server(tmp_path, wait="ready") as s:
        stubs = hammer_view_model(s, (1000, 32_768, 65_472, 65_536, 65_600, 100_000, 300_000),
                                  8, 40)
        for pid in stubs:
            maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
            assert "flowserve-py-out" not in maps, "an output viewing an input was copied"


def test_output_layouts_round_trip(tmp_path):
    # Whatever memory layout execute() returns (big-endian, transposed, a strided view,
    # several dtypes and BYTES in one response) reaches the client as little-endian C
    # order, inline (small) and through a segment (large) alike, next to an output that
    # goes back by reference into the arena.
    python_model(tmp_path, "pylayout", """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()  # [n, 4] FP32
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("BE", x.astype(">f4")),
                pb_utils.Tensor("TR", np.asfortranarray(x).T),
                pb_utils.Tensor("ST", x[::2, ::-1]),
                pb_utils.Tensor("HALF", x.astype(np.float16)),
                pb_utils.Tensor("FLAG", x > 0.5),
                pb_utils.Tensor("TXT", np.array([b"a", b"bc" * 3], dtype=np.object_)),
                pb_utils.Tensor("VIEW", x[1:]),  # by reference when the batch is large
            ]))
        return out
""", cfg("pylayout", [io("INPUT0", "TYPE_FP32", [-1, 4])],
         [io("BE", "TYPE_FP32", [-1, 4]), io("TR", "TYPE_FP32", [4, -1]),
          io("ST", "TYPE_FP32", [-1, 4]), io("HALF", "TYPE_FP16", [-1, 4]),
          io("FLAG", "TYPE_BOOL", [-1, 4]), io("TXT", "TYPE_STRING", [2]),
          io("VIEW", "TYPE_FP32", [-1, 4])]))
    with Server(tmp_path, wait="ready") as s:
        for rows in (1, 3, 2000, 9000):
            x = np.random.default_rng(rows).random((rows, 4), dtype=np.float32)
            r = ok(infer(s, "pylayout", {"INPUT0": (x, "FP32")}))
            np.testing.assert_array_equal(r["BE"], x)
            np.testing.assert_array_equal(r["TR"], x.T)
            np.testing.assert_array_equal(r["ST"], x[::2, ::-1])
            np.testing.assert_array_equal(r["HALF"], x.astype(np.float16))
            np.testing.assert_array_equal(r["FLAG"], x > 0.5)
            assert r["TXT"] == [b"a", b"bcbcbc"]
            np.testing.assert_array_equal(r["VIEW"], x[1:])


def test_stub_channel_frames_and_descriptors():
    # stub.py reads frames through a buffer: one read may bring several frames, or part of
    # one. Each frame must come out whole with exactly the descriptors sent with it,
    # whether small, larger than the buffer, or sent back to back.
    import array
    import socket
    import sys
    sys.path.insert(0, str(ROOT / "src/backends/python"))
    import stub
    ours, theirs = socket.socketpair()
    ch = stub.Channel(os.dup(ours.fileno()))
    frames = []
    # The first five are queued before any read (one read then spans several of them).
    for i, (tail_len, nfds) in enumerate([(0, 0), (10, 1), (5, 0), (1, 3), (0, 1),
                                          (300_000, 2), (5, 0), (70_000, 1), (65_000, 0),
                                          (1, 3), (0, 1), (200_000, 0), (3, 1)]):
        fds = []
        for k in range(nfds):
            fd = os.memfd_create(f"f{i}")
            os.ftruncate(fd, 4096 * (i + 1) + k)  # the size names the frame and the fd
            fds.append(fd)
        frames.append((i, bytes([i]) * tail_len, fds))

    def send(frames):
        for i, tail, fds in frames:
            js = json.dumps({"i": i}).encode()
            head = struct.pack("<II", len(js) + len(tail), len(js))
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            data = head + js + tail
            sent = theirs.sendmsg([data], anc)
            theirs.sendall(data[sent:])
    send(frames[:5])
    sender = threading.Thread(target=send, args=(frames[5:],), daemon=True)  # no hang on failure
    sender.start()
    for i, tail, fds in frames:
        msg, got_tail, got_fds = ch.recv(spin=True)
        assert msg == {"i": i}
        assert bytes(got_tail) == tail, i
        assert [os.fstat(fd).st_size for fd in got_fds] == \
            [4096 * (i + 1) + k for k in range(len(fds))], i
        for fd in got_fds:
            os.close(fd)
    sender.join()
    for _, _, fds in frames:
        for fd in fds:
            os.close(fd)


def test_stub_channel_sleeps_until_input_only():
    # The stub waits for the next batch right after sending its reply. The server reading
    # that reply gives the socket write space; a reader asleep in recvmsg() is woken by
    # that too, once per batch for nothing (a context switch on each side). The channel
    # must sleep for input only.
    import select
    import socket
    import sys
    sys.path.insert(0, str(ROOT / "src/backends/python"))
    import stub
    ours, theirs = socket.socketpair()
    ch = stub.Channel(os.dup(ours.fileno()))
    tid = []
    got = []

    def reader():
        tid.append(threading.get_native_id())
        ch.send({"op": "done"}, [b"x" * 1000], tail_len=1000)
        got.append(ch.recv())

    def sleeps():
        with open(f"/proc/self/task/{tid[0]}/status") as f:
            return int(next(l for l in f if l.startswith("voluntary_ctxt_switches")).split()[1])

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    # Until the reader has sent its frame and sleeps waiting for ours (no switch for 0.1 s).
    while not tid:
        time.sleep(0.01)
    before = sleeps()
    for _ in range(50):
        time.sleep(0.1)
        now, before = before, sleeps()
        if now == before and select.select([theirs], [], [], 0)[0]:
            break
    assert len(theirs.recv(65536)) == 8 + len('{"op":"done"}') + 1000
    time.sleep(0.2)
    woken = sleeps() - before
    theirs.sendall(struct.pack("<II", 2, 2) + b"{}")
    t.join(5)
    assert got and got[0][0] == {}
    assert woken == 0, f"the reader woke {woken} time(s) while no input came"


def test_no_leaks_over_requests_and_reloads(tmp_path):
    python_model(tmp_path, "pyid", IDENT,
                 cfg("pyid", [io("INPUT0", "TYPE_FP32", [-1])], [io("OUTPUT0", "TYPE_FP32", [-1])]))
    with Server(tmp_path, args=["--model-control-mode=explicit", "--load-model=pyid"],
                wait="ready") as s:
        def snapshot():
            fds = len(os.listdir(f"/proc/{s.proc.pid}/fd"))
            maps = pathlib.Path(f"/proc/{s.proc.pid}/maps").read_text().count("memfd:flowserve-py")  # arenas and output segments
            shm = len(os.listdir("/dev/shm"))
            # request bodies in shareable memory: pooled, so bounded (the idle ones and
            # the one in use)
            bodies = pathlib.Path(f"/proc/{s.proc.pid}/maps").read_text().count("memfd:flowserve-body")
            return fds, maps, shm, len(stubs_of(s.proc.pid)), bodies

        sess = requests.Session()
        small = np.arange(16, dtype=np.float32)
        big = np.ones(100_000, dtype=np.float32)  # goes through a segment, not inline

        def burst(n):
            for i in range(n):
                x = big if i % 10 == 0 else small
                head = json.dumps({"inputs": [{"name": "INPUT0", "shape": [x.size], "datatype": "FP32",
                                               "parameters": {"binary_data_size": x.nbytes}}],
                                   "parameters": {"binary_data_output": True}}).encode()
                r = sess.post(f"{s.url}/v2/models/pyid/infer", data=head + x.tobytes(),
                              headers={"Inference-Header-Content-Length": str(len(head))})
                assert r.status_code == 200

        # The figures (fewer through the environment on a slow machine). Mostly the
        # reloads' time: each one starts a Python process that imports numpy.
        n_requests = int(os.environ.get("FLOWSERVE_PY_LEAK_REQUESTS", "10000"))
        n_reloads = int(os.environ.get("FLOWSERVE_PY_LEAK_RELOADS", "50"))
        burst(200)
        before = snapshot()
        burst(n_requests)
        for _ in range(n_reloads):
            r = sess.post(f"{s.url}/v2/repository/models/pyid/unload")
            assert r.status_code == 200
            r = sess.post(f"{s.url}/v2/repository/models/pyid/load")
            assert r.status_code == 200, r.text
            burst(5)
        wait_until(lambda: snapshot()[3] == 1)
        after = snapshot()
        assert after[0] <= before[0] + 2, (before, after)  # fds
        assert after[1] <= before[1] + 1, (before, after)  # mapped segments
        assert after[2] <= before[2], (before, after)      # /dev/shm entries
        assert after[3] == 1, (before, after)              # processes
        assert after[4] <= 9, (before, after)              # body buffers


def test_example_digits_image_ensemble(tmp_path):
    """examples/: the Python decode model chained to digits gives the client-side scores."""
    import sys
    sys.path.insert(0, str(ROOT / "examples"))
    import build_repository
    from python_models import build_python_models
    build_repository.build_digits(tmp_path, False)
    build_repository.write_digit_pngs()  # examples/data/ is made, not checked in
    build_python_models(tmp_path)
    with Server(tmp_path, wait="ready") as s:
        client = ["/usr/bin/python3", str(ROOT / "examples" / "clients" / "classify.py"), "--url", s.url]
        png = str(ROOT / "examples" / "data" / "digit_3.png")
        raw = subprocess.run(client + ["--raw", png], capture_output=True, text=True, timeout=60)
        local = subprocess.run(client + [png], capture_output=True, text=True, timeout=60)
        assert raw.returncode == 0, raw.stderr
        assert raw.stdout == local.stdout
        assert raw.stdout.splitlines()[0].endswith(":3:THREE")


def test_backend_config_and_missing_files(tmp_path):
    python_model(tmp_path, "m", IDENT,
                 cfg("m", [io("INPUT0", "TYPE_FP32", [-1])], [io("OUTPUT0", "TYPE_FP32", [-1])]))
    write_model(tmp_path, "nofile", cfg("nofile", [io("INPUT0", "TYPE_FP32", [-1])],
                                        [io("OUTPUT0", "TYPE_FP32", [-1])]))
    with Server(tmp_path, args=["--exit-on-error=false",
                                "--backend-config=python,python-executable=/nonexistent/python3"],
                wait="live") as s:
        index = wait_until(lambda: {m["name"]: m for m in requests.post(
            f"{s.url}/v2/repository/index", json={}).json() if m.get("state")})
        assert "/nonexistent/python3" in index["m"]["reason"], index
        assert "model.py" in index["nofile"]["reason"], index
        assert stubs_of(s.proc.pid) == []


def test_grpc_bytes_and_fp32(tmp_path):
    """The gRPC frontend serves Python outputs (inline and shared-memory ones) too."""
    import grpc
    import grpc_stubs
    pb2, pb2_grpc = grpc_stubs.load()
    python_model(tmp_path, "bytes", BYTES_ECHO,
                 cfg("bytes", [io("TEXT", "TYPE_STRING", [-1])],
                     [io("UPPER", "TYPE_STRING", [-1]), io("LEN", "TYPE_INT32", [-1])]))
    python_model(tmp_path, "pyid", IDENT,
                 cfg("pyid", [io("INPUT0", "TYPE_FP32", [-1])], [io("OUTPUT0", "TYPE_FP32", [-1])]))
    with Server(tmp_path, wait="ready") as s:
        stub = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(
            s.grpc_url, options=[("grpc.max_receive_message_length", 64 << 20),
                                 ("grpc.max_send_message_length", 64 << 20)]))
        req = pb2.ModelInferRequest(model_name="bytes")
        req.inputs.append(pb2.ModelInferRequest.InferInputTensor(name="TEXT", datatype="BYTES",
                                                                 shape=[2]))
        req.raw_input_contents.append(to_bytes_payload([b"ab", b"xyz"]))
        resp = stub.ModelInfer(req, timeout=30)
        outs = {o.name: i for i, o in enumerate(resp.outputs)}
        assert from_bytes_payload(resp.raw_output_contents[outs["UPPER"]]) == [b"AB!", b"XYZ!"]
        for n in (16, 1 << 20):  # inline, then through a pooled segment
            x = np.arange(n, dtype=np.float32)
            req = pb2.ModelInferRequest(model_name="pyid")
            req.inputs.append(pb2.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32",
                                                                     shape=[n]))
            req.raw_input_contents.append(x.tobytes())
            resp = stub.ModelInfer(req, timeout=30)
            np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], np.float32), x)
