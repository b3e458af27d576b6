"""The pytorch (LibTorch) backend: the server's outputs equal python3-torch's outputs for the
same saved module, load-time errors say what is wrong, execution errors stay per request."""
import json
import os
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch

import models_torch
from harness import Server

NP_TO_WIRE = {np.float32: "FP32", np.int64: "INT64", np.bool_: "BOOL", np.float64: "FP64"}
WIRE_TO_NP = {"FP32": np.float32, "INT64": np.int64, "BOOL": np.bool_, "FP64": np.float64}


@pytest.fixture(scope="module")
def env():
    tmp = tempfile.TemporaryDirectory(prefix="flowserve-torch-")
    paths = models_torch.build_good_models(tmp.name)
    errors = models_torch.build_broken_models(tmp.name)
    server = Server(tmp.name, ["--exit-on-error=false", "--strict-readiness=false"], wait="live")
    try:
        _wait_loaded(server, list(paths))
        yield server, paths, errors
    finally:
        server.stop()
        tmp.cleanup()


def _index(server):
    r = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=10)
    r.raise_for_status()
    return {m["name"]: m for m in r.json()}


def _wait_loaded(server, names, timeout=60):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready = [n for n in names
                 if requests.get(f"{server.url}/v2/models/{n}/ready", timeout=5).status_code == 200]
        if len(ready) == len(names):
            return
        time.sleep(0.1)
    raise AssertionError(f"models not ready: {set(names) - set(ready)}\n{server.log()}")


def infer(server, model, inputs, outputs=None, classification=None):
    """Binary-extension request. inputs: {name: np.ndarray}. Returns (status, {name: value})."""
    header = {"inputs": [], "outputs": []}
    blobs = []
    for name, arr in inputs.items():
        arr = np.ascontiguousarray(arr)
        header["inputs"].append({"name": name, "shape": list(arr.shape),
                                 "datatype": NP_TO_WIRE[arr.dtype.type],
                                 "parameters": {"binary_data_size": arr.nbytes}})
        blobs.append(arr.tobytes())
    for name in outputs or []:
        params = {"binary_data": True}
        if classification:
            params["classification"] = classification
        header["outputs"].append({"name": name, "parameters": params})
    if not outputs:
        header.pop("outputs")
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header).encode()
    r = requests.post(f"{server.url}/v2/models/{model}/infer", data=head + b"".join(blobs),
                      headers={"Inference-Header-Content-Length": str(len(head))}, timeout=30)
    if r.status_code != 200:
        return r.status_code, r.json().get("error", r.text)
    n = int(r.headers.get("Inference-Header-Content-Length", len(r.content)))
    meta = json.loads(r.content[:n])
    body, pos, result = r.content[n:], 0, {}
    for out in meta["outputs"]:
        shape = out["shape"]
        if "data" in out:
            data = out["data"]
        else:
            size = out["parameters"]["binary_data_size"]
            raw, pos = body[pos:pos + size], pos + size
            data = raw
        if out["datatype"] == "BYTES":
            if isinstance(data, (bytes, bytearray)):
                items, p = [], 0
                while p < len(data):
                    (ln,) = struct.unpack_from("<I", data, p)
                    items.append(data[p + 4:p + 4 + ln].decode())
                    p += 4 + ln
                data = items
            result[out["name"]] = np.array(data, dtype=object).reshape(shape)
        elif isinstance(data, (bytes, bytearray)):
            result[out["name"]] = np.frombuffer(data, WIRE_TO_NP[out["datatype"]]).reshape(shape)
        else:
            result[out["name"]] = np.array(data, WIRE_TO_NP[out["datatype"]]).reshape(shape)
    return 200, result


def ok(server, model, inputs, **kw):
    status, out = infer(server, model, inputs, **kw)
    assert status == 200, out
    return out


def ref(paths, name, *args):
    m = models_torch.load_reference(paths[name])
    with torch.no_grad():
        return m(*[torch.from_numpy(a) for a in args])


def close(got, want):
    np.testing.assert_allclose(got, want.numpy() if torch.is_tensor(want) else want,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 8])
def test_one_input_one_output(env, batch):
    server, paths, _ = env
    x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
    out = ok(server, "affine", {"INPUT__0": x})
    assert out["OUTPUT__0"].shape == (batch, 3)
    close(out["OUTPUT__0"], ref(paths, "affine", x))


def test_concurrent_requests_are_concatenated_and_split_back(env):
    server, paths, _ = env
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(8)]
    before = _execution_count(server, "affine")
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda x: ok(server, "affine", {"INPUT__0": x}), xs))
    for x, out in zip(xs, outs):
        close(out["OUTPUT__0"], ref(paths, "affine", x))
    # The 20 ms queue delay lets the batcher join requests: fewer runs than requests.
    assert _execution_count(server, "affine") - before < len(xs)


def _execution_count(server, model):
    r = requests.get(f"{server.url}/v2/models/{model}/stats", timeout=5)
    r.raise_for_status()
    return int(r.json()["model_stats"][0]["execution_count"])


def test_two_instances_each_serve_and_share_the_cores(env):
    server, paths, _ = env
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda x: ok(server, "two_instances", {"INPUT__0": x}), xs))
    for x, out in zip(xs, outs):
        close(out["OUTPUT__0"], ref(paths, "two_instances", x))
    line = next(ln for ln in server.log().splitlines() if "'two_instances' version 1: loaded" in ln)
    cores = len(os.sched_getaffinity(0))
    assert f"{max(1, cores // 2)} intra-op thread(s) per instance" in line, line


def test_parameters_disable_optimization_and_set_threads(env):
    server, paths, _ = env
    x = np.random.default_rng(9).standard_normal((3, 4)).astype(np.float32)
    close(ok(server, "unoptimized", {"INPUT__0": x})["OUTPUT__0"], ref(paths, "unoptimized", x))
    line = next(ln for ln in server.log().splitlines() if "'unoptimized' version 1: loaded" in ln)
    assert "not optimized (disabled by config)" in line and "3 intra-op thread(s)" in line, line
    line = next(ln for ln in server.log().splitlines() if "'affine' version 1: loaded" in ln)
    assert "frozen and optimized for inference" in line, line


def test_several_inputs_and_tuple_of_outputs_bind_by_index(env):
    server, paths, _ = env
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2))
    # The config lists INPUT__1 first: binding follows the index, not the order.
    out = ok(server, "multi_io", {"INPUT__1": b, "INPUT__0": a})
    want = ref(paths, "multi_io", a, b)
    for i in range(3):
        close(out[f"OUTPUT__{i}"], want[i])


def test_requested_subset_of_outputs(env):
    server, paths, _ = env
    a, b = np.ones((1, 3), np.float32), np.full((1, 3), 0.25, np.float32)
    out = ok(server, "multi_io", {"INPUT__0": a, "INPUT__1": b}, outputs=["OUTPUT__2"])
    assert list(out) == ["OUTPUT__2"]
    close(out["OUTPUT__2"], ref(paths, "multi_io", a, b)[2])


def test_named_arguments_bind_by_forward_argument_name(env):
    server, paths, _ = env
    data = np.array([1.5, -2.0], np.float32)
    scale = np.array([3.0, 0.5], np.float32)
    shift = np.array([0.25, 10.0], np.float32)
    out = ok(server, "named", {"shift": shift, "scale": scale, "data": data})
    close(out["result"], ref(paths, "named", data, scale, shift))


def test_other_names_bind_by_config_order_and_log_it(env):
    server, paths, _ = env
    a, b, c = (np.array(v, np.float32) for v in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]))
    out = ok(server, "by_order", {"gamma": c, "alpha": a, "beta": b})
    close(out["out"], ref(paths, "by_order", a, b, c))
    log = server.log()
    assert "alpha->data" in log and "beta->scale" in log and "gamma->shift" in log, log


def test_dict_output_binds_by_key(env):
    server, paths, _ = env
    x = np.array([0.5, -1.25, 3.0], np.float32)
    out = ok(server, "dict_out", {"INPUT__0": x})
    want = ref(paths, "dict_out", x)
    close(out["negated"], want["negated"])
    close(out["plus_one"], want["plus_one"])


def test_int64_and_bool_tensors(env):
    server, paths, _ = env
    ids = np.arange(10, dtype=np.int64).reshape(2, 5) * 1_000_000_007
    mask = np.array([[True, False, True, True, False], [False, False, True, False, True]])
    out = ok(server, "int_bool", {"INPUT__0": ids, "INPUT__1": mask})
    want = ref(paths, "int_bool", ids, mask)
    assert out["OUTPUT__0"].dtype == np.int64 and out["OUTPUT__1"].dtype == np.bool_
    np.testing.assert_array_equal(out["OUTPUT__0"], want[0].numpy())
    np.testing.assert_array_equal(out["OUTPUT__1"], want[1].numpy())


@pytest.mark.parametrize("model", ["oneflow_file", "oneflow_dir"])
def test_oneflow_layout_model_entry(env, model):
    server, paths, _ = env
    x = np.array([1.5, -4.0], np.float32)
    out = ok(server, model, {"INPUT_0": x})
    close(out["OUTPUT_0"], ref(paths, model, x))


@pytest.mark.parametrize("model", sorted(models_torch.LOAD_ERRORS))
def test_load_error_message(env, model):
    server, _, errors = env
    entry = _index(server).get(model)
    assert entry is not None, f"{model} missing from the repository index"
    assert entry.get("state") != "READY"
    # The reason in the index is the load error; the log has it too.
    reason = entry.get("reason", "")
    assert errors[model] in reason, f"index reason: {reason!r}\nlog:\n{server.log()}"
    assert requests.get(f"{server.url}/v2/models/{model}/ready", timeout=5).status_code != 200


def test_exception_at_execution_is_the_request_error_and_instance_keeps_serving(env):
    server, paths, _ = env
    status, err = infer(server, "thrower", {"INPUT__0": np.array([-1.0, -2.0], np.float32)})
    assert status >= 400
    assert "negative input is not allowed" in err
    x = np.array([1.0, 2.0], np.float32)
    out = ok(server, "thrower", {"INPUT__0": x})
    close(out["OUTPUT__0"], ref(paths, "thrower", x))


def test_output_dtype_mismatch_is_a_clear_request_error(env):
    server, _, _ = env
    status, err = infer(server, "wrong_dtype", {"INPUT__0": np.array([1.0, 2.0], np.float32)})
    assert status >= 400
    assert "TYPE_FP32" in err and "TYPE_INT64" in err, err


def test_classification_top_k_matches_numpy_argsort(env):
    server, paths, _ = env
    x = np.random.default_rng(11).standard_normal((2, 16)).astype(np.float32)
    out = ok(server, "classifier", {"INPUT__0": x}, outputs=["OUTPUT__0"], classification=3)
    probs = ref(paths, "classifier", x).numpy()
    got = out["OUTPUT__0"]
    assert got.shape == (2, 3)
    for row in range(2):
        want = np.argsort(-probs[row], kind="stable")[:3]
        for k, entry in enumerate(got[row]):
            score, index, label = entry.split(":")
            assert int(index) == want[k]
            assert label == models_torch.LABELS[want[k]]
            assert abs(float(score) - probs[row, want[k]]) < 1e-5
