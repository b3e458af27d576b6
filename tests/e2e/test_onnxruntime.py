"""The onnxruntime backend: every KServe datatype round-trips through ONNX Runtime, exported
networks answer what python3-torch answers, config auto-complete fills in and checks against
the model, and what goes wrong (a corrupt file, a missing module, a bad request, an error
inside ONNX Runtime) fails only what it must, with a message that says why."""
import json
import pathlib
import shutil
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import requests
import torch
from onnx import TensorProto, helper

from harness import BIN, Server, run_to_exit, write_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_BACKENDS = pathlib.Path(BIN).resolve().parent / "backends"

# wire datatype -> (ONNX element type, numpy dtype used on the wire)
DTYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "BF16": (TensorProto.BFLOAT16, np.uint16),  # bit patterns: numpy has no bfloat16
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
    "BYTES": (TensorProto.STRING, np.object_),
}
NP_TO_WIRE = {np.float32: "FP32", np.float64: "FP64", np.int64: "INT64", np.int32: "INT32"}


# --- building models -------------------------------------------------------------------

def save_onnx(path, nodes, inputs, outputs, initializers=(), opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def identity_onnx(path, elem, shape=("batch", 3)):
    return save_onnx(path, [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
                     [helper.make_tensor_value_info("INPUT0", elem, list(shape))],
                     [helper.make_tensor_value_info("OUTPUT0", elem, list(shape))])


def add_one_onnx(path, shape=("batch", 4)):
    """OUTPUT0 = INPUT0 + 1 (FP32), and TEXT_OUT = TEXT_IN (strings), so one run joins
    numeric and string tensors from several requests."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    return save_onnx(
        path,
        [helper.make_node("Add", ["INPUT0", "one"], ["OUTPUT0"]),
         helper.make_node("Identity", ["TEXT_IN"], ["TEXT_OUT"])],
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, list(shape)),
         helper.make_tensor_value_info("TEXT_IN", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, list(shape)),
         helper.make_tensor_value_info("TEXT_OUT", TensorProto.STRING, ["batch", 1])],
        initializers=[one])


def reshape_onnx(path):
    """[n] -> [n/3, 3]: ONNX Runtime fails at run time when n is not a multiple of 3."""
    target = helper.make_tensor("target", TensorProto.INT64, [2], [-1, 3])
    return save_onnx(path, [helper.make_node("Reshape", ["INPUT0", "target"], ["OUTPUT0"])],
                     [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["n"])],
                     [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["m", 3])],
                     initializers=[target])


class SmallNet(torch.nn.Module):
    """Conv, pooling, linear and softmax: the ops an exported image classifier has."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return torch.softmax(self.fc(torch.flatten(y, 1)), dim=1)


def export_torch(net, path, example, names=("INPUT__0", "OUTPUT__0")):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(net, example, str(path), input_names=[names[0]],
                          output_names=[names[1]], opset_version=13,
                          dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}})
    return path


def config(name, inputs, outputs, max_batch_size=8, extra=""):
    def io(items):
        return ",\n".join(
            f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}'
            for n, t, d in items)
    return (f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{io(inputs)}\n]\noutput [\n{io(outputs)}\n]\n{extra}\n")


def config_type(wire):
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


# --- talking to the server -------------------------------------------------------------

def encode(arr, wire):
    if wire == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in arr.reshape(-1))
    return np.ascontiguousarray(arr).tobytes()


def decode(raw, wire, shape):
    if wire == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(raw[pos + 4:pos + 4 + n])
            pos += 4 + n
        return np.array(items, dtype=np.object_).reshape(shape)
    return np.frombuffer(raw, dtype=DTYPES[wire][1]).reshape(shape)


def infer(server, model, inputs, outputs=None):
    """Binary-extension request. inputs: {name: (wire datatype, np.ndarray)}.
    Returns (HTTP status, {name: np.ndarray} or the error text)."""
    header = {"inputs": [], "parameters": {"binary_data_output": True}}
    blobs = []
    for name, (wire, arr) in inputs.items():
        data = encode(arr, wire)
        header["inputs"].append({"name": name, "shape": list(arr.shape), "datatype": wire,
                                 "parameters": {"binary_data_size": len(data)}})
        blobs.append(data)
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    head = json.dumps(header).encode()
    r = requests.post(f"{server.url}/v2/models/{model}/infer", data=head + b"".join(blobs),
                      headers={"Inference-Header-Content-Length": str(len(head))}, timeout=60)
    if r.status_code != 200:
        return r.status_code, r.json().get("error", r.text)
    n = int(r.headers.get("Inference-Header-Content-Length", len(r.content)))
    meta = json.loads(r.content[:n])
    body, pos, result = r.content[n:], 0, {}
    for out in meta["outputs"]:
        size = out["parameters"]["binary_data_size"]
        result[out["name"]] = decode(body[pos:pos + size], out["datatype"], out["shape"])
        pos += size
    return 200, result


def index(server):
    r = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=10)
    r.raise_for_status()
    return {m["name"]: m for m in r.json()}


def model_config(server, model):
    r = requests.get(f"{server.url}/v2/models/{model}/config", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_settled(server, names, timeout=90):
    """Waits until every model in `names` is READY or UNAVAILABLE; returns the index."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        idx = index(server)
        if all(idx.get(n, {}).get("state") in ("READY", "UNAVAILABLE") for n in names):
            return idx
        time.sleep(0.1)
    raise AssertionError(f"models not settled: {index(server)}\n{server.log()}")


def stats(server, model):
    r = requests.get(f"{server.url}/v2/models/{model}/versions/1/stats", timeout=10)
    r.raise_for_status()
    return r.json()["model_stats"][0]


# --- one server for most cases ---------------------------------------------------------

GOOD = []  # models that must load
BAD = {}   # model -> substrings its load failure reason must contain


def build_repository(repo):
    repo = pathlib.Path(repo)
    # Every datatype, explicit config, batching.
    for wire, (elem, _) in DTYPES.items():
        name = f"dtype_{wire.lower()}"
        identity_onnx(repo / name / "1" / "model.onnx", elem)
        (repo / name / "config.pbtxt").write_text(
            config(name, [("INPUT0", config_type(wire), [3])],
                   [("OUTPUT0", config_type(wire), [3])]))
        GOOD.append(name)

    # Auto-complete: no config.pbtxt at all, batching model.
    identity_onnx(repo / "auto_batch" / "1" / "model.onnx", TensorProto.FLOAT, ("batch", 3))
    # ... and a model whose first dim is fixed: no batching.
    identity_onnx(repo / "auto_fixed" / "1" / "model.onnx", TensorProto.INT32, (2, 3))
    # Partial config: inputs only (outputs filled), and platform only.
    add_one_onnx(repo / "partial_io" / "1" / "model.onnx")
    (repo / "partial_io" / "config.pbtxt").write_text(
        'name: "partial_io"\nbackend: "onnxruntime"\nmax_batch_size: 2\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')
    identity_onnx(repo / "partial_platform" / "1" / "model.onnx", TensorProto.FLOAT, ("batch", 3))
    (repo / "partial_platform" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n')
    GOOD.extend(["auto_batch", "auto_fixed", "partial_io", "partial_platform"])

    # Contradicting configs: each names the tensor, both values and the file.
    for name, cfg, want in [
        ("bad_dim", config("bad_dim", [("INPUT0", "TYPE_FP32", [5])], [("OUTPUT0", "TYPE_FP32", [3])]),
         ["INPUT0", "[5]", "[-1,3]", "model.onnx"]),
        ("bad_type", config("bad_type", [("INPUT0", "TYPE_INT32", [3])],
                            [("OUTPUT0", "TYPE_FP32", [3])]),
         ["INPUT0", "TYPE_INT32", "tensor(float)", "model.onnx"]),
        ("bad_name", config("bad_name", [("WRONG", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])]),
         ["WRONG", "INPUT0", "model.onnx"]),
        ("bad_out", config("bad_out", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP64", [3])]),
         ["OUTPUT0", "TYPE_FP64", "tensor(float)", "model.onnx"]),
    ]:
        identity_onnx(repo / name / "1" / "model.onnx", TensorProto.FLOAT, ("batch", 3))
        (repo / name / "config.pbtxt").write_text(cfg)
        BAD[name] = want
    identity_onnx(repo / "bad_batch" / "1" / "model.onnx", TensorProto.FLOAT, (2, 3))
    (repo / "bad_batch" / "config.pbtxt").write_text(
        config("bad_batch", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])],
               max_batch_size=4))
    BAD["bad_batch"] = ["INPUT0", "max_batch_size 4", "[2,3]", "model.onnx"]

    # A file that is not ONNX, and a missing file.
    (repo / "corrupt" / "1").mkdir(parents=True)
    (repo / "corrupt" / "1" / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    (repo / "corrupt" / "config.pbtxt").write_text(
        config("corrupt", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])]))
    BAD["corrupt"] = ["cannot load ONNX model", "model.onnx"]
    (repo / "nofile" / "1").mkdir(parents=True)
    (repo / "nofile" / "1" / "weights.bin").write_bytes(b"")
    (repo / "nofile" / "config.pbtxt").write_text(
        config("nofile", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])]))
    BAD["nofile"] = ["model.onnx", "weights.bin"]
    (repo / "bad_param" / "1").mkdir(parents=True)
    identity_onnx(repo / "bad_param" / "1" / "model.onnx", TensorProto.FLOAT)
    (repo / "bad_param" / "config.pbtxt").write_text(
        config("bad_param", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])],
               extra='parameters { key: "execution_mode" value: { string_value: "fast" } }'))
    BAD["bad_param"] = ["execution_mode", "fast"]

    # OneFlow's layout (a `model` folder holding model.onnx), and default_model_filename.
    identity_onnx(repo / "oneflow_layout" / "1" / "model" / "model.onnx", TensorProto.FLOAT)
    (repo / "oneflow_layout" / "config.pbtxt").write_text(
        config("oneflow_layout", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])]))
    identity_onnx(repo / "named_file" / "1" / "net.onnx", TensorProto.FLOAT)
    (repo / "named_file" / "config.pbtxt").write_text(
        config("named_file", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])],
               extra='default_model_filename: "net.onnx"'))
    GOOD.extend(["oneflow_layout", "named_file"])

    # Every session option Triton's ONNX backend takes.
    identity_onnx(repo / "tuned" / "1" / "model.onnx", TensorProto.FLOAT)
    (repo / "tuned" / "config.pbtxt").write_text(
        config("tuned", [("INPUT0", "TYPE_FP32", [3])], [("OUTPUT0", "TYPE_FP32", [3])], extra="""
optimization { graph { level: 2 } }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "inter_op_thread_count" value: { string_value: "1" } }
parameters { key: "execution_mode" value: { string_value: "1" } }
parameters { key: "enable_mem_arena" value: { string_value: "0" } }
parameters { key: "enable_mem_pattern" value: { string_value: "0" } }
parameters { key: "session.intra_op.allow_spinning" value: { string_value: "0" } }
"""))
    GOOD.append("tuned")

    # Batching: a long queue delay so concurrent requests meet in one batch; two
    # instances sharing a session, and two with a session (and thread pool) each.
    for name, extra in [
        ("batched", "dynamic_batching { max_queue_delay_microseconds: 200000 }"),
        ("shared2", "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
                    "instance_group [ { count: 2 kind: KIND_CPU } ]"),
        ("own2", "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
                 "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
                 'parameters { key: "intra_op_thread_count" value: { string_value: "2" } }'),
    ]:
        add_one_onnx(repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(
            config(name, [("INPUT0", "TYPE_FP32", [4]), ("TEXT_IN", "TYPE_STRING", [1])],
                   [("OUTPUT0", "TYPE_FP32", [4]), ("TEXT_OUT", "TYPE_STRING", [1])],
                   max_batch_size=16, extra=extra))
        GOOD.append(name)

    # An error inside ONNX Runtime at run time.
    reshape_onnx(repo / "reshaper" / "1" / "model.onnx")
    (repo / "reshaper" / "config.pbtxt").write_text(
        config("reshaper", [("INPUT0", "TYPE_FP32", [-1])], [("OUTPUT0", "TYPE_FP32", [-1, 3])],
               max_batch_size=0))
    GOOD.append("reshaper")

    # An exported torch network.
    torch.manual_seed(0)
    net = SmallNet().eval()
    export_torch(net, repo / "smallnet" / "1" / "model.onnx", torch.rand(2, 3, 8, 8))
    GOOD.append("smallnet")  # no config.pbtxt: auto-completed
    return net


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    repo = tmp_path_factory.mktemp("onnx-repo")
    net = build_repository(repo)
    server = Server(repo, ["--exit-on-error=false", "--strict-readiness=false"], wait="live")
    try:
        idx = wait_settled(server, GOOD + list(BAD))
        yield server, net, idx
    finally:
        server.stop()


def test_every_good_model_loads(env):
    server, _, idx = env
    not_ready = {n: idx[n].get("reason") for n in GOOD if idx[n]["state"] != "READY"}
    assert not not_ready, not_ready


@pytest.mark.parametrize("wire", list(DTYPES))
def test_every_datatype_round_trips(env, wire):
    server = env[0]
    rng = np.random.default_rng(7)
    if wire == "BYTES":
        x = np.array([[b"", b"a\x00b", "\u00e9t\u00e9".encode()], [b"x" * 300, b"\xff", b"z"]],
                     dtype=np.object_)
    elif wire == "BOOL":
        x = rng.integers(0, 2, (2, 3)).astype(np.bool_)
    elif wire in ("FP16", "FP32", "FP64"):
        x = rng.standard_normal((2, 3)).astype(DTYPES[wire][1])
    elif wire == "BF16":
        x = (rng.standard_normal((2, 3)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    else:
        info = np.iinfo(DTYPES[wire][1])
        x = np.array([[info.min, info.max, 0], [1, info.max - 1, info.min + 1]],
                     dtype=DTYPES[wire][1])
    code, out = infer(server, f"dtype_{wire.lower()}", {"INPUT0": (wire, x)})
    assert code == 200, out
    assert out["OUTPUT0"].shape == x.shape
    if wire == "BYTES":
        assert out["OUTPUT0"].tolist() == x.tolist()
    else:
        assert out["OUTPUT0"].dtype == DTYPES[wire][1]
        np.testing.assert_array_equal(out["OUTPUT0"], x)


@pytest.mark.parametrize("wire", ["BYTES", "FP16", "BF16", "UINT64", "BOOL"])
def test_grpc_round_trip(env, wire):
    import grpc
    import grpc_stubs

    pb2, pb2_grpc = grpc_stubs.load()
    if wire == "BYTES":
        x = np.array([[b"grpc", b"", b"\x00\x01"]], dtype=np.object_)
    else:
        x = np.arange(6).reshape(2, 3).astype(DTYPES[wire][1])
    req = pb2.ModelInferRequest(model_name=f"dtype_{wire.lower()}")
    req.inputs.add(name="INPUT0", datatype=wire, shape=list(x.shape))
    req.raw_input_contents.append(encode(x, wire))
    with grpc.insecure_channel(env[0].grpc_url) as channel:
        resp = pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=30)
    out = resp.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("OUTPUT0", wire, list(x.shape))
    got = decode(resp.raw_output_contents[0], wire, list(x.shape))
    assert got.tolist() == x.tolist()


def test_bytes_json_round_trip(env):
    r = requests.post(f"{env[0].url}/v2/models/dtype_bytes/infer", json={
        "inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "BYTES",
                    "data": ["hello", "", "w\u00f6rld"]}]}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == ["hello", "", "w\u00f6rld"]


def test_exported_network_matches_torch(env):
    server, net, _ = env
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        want = net(x).numpy()
    code, out = infer(server, "smallnet", {"INPUT__0": ("FP32", x.numpy())})
    assert code == 200, out
    np.testing.assert_allclose(out["OUTPUT__0"], want, rtol=1e-4, atol=1e-4)


def test_examples_digits_onnx_matches_the_torchscript_digits(tmp_path):
    """`make models`'s digits_onnx gives the TorchScript digits' answers (python3-torch)."""
    sys.path.insert(0, str(ROOT / "examples"))
    import build_repository as examples

    examples.build_digits(tmp_path, force=False)
    examples.build_digits_onnx(tmp_path, force=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(tmp_path / "digits_onnx", repo / "digits_onnx")
    _, x_test, _, _ = examples.digits_split()
    x = x_test[:5]
    with torch.no_grad():
        want = torch.jit.load(str(tmp_path / "digits" / "1" / "model.pt"))(torch.from_numpy(x))
    with Server(repo, [], wait="ready") as s:
        code, out = infer(s, "digits_onnx", {"INPUT__0": ("FP32", x)})
        assert code == 200, out
        np.testing.assert_allclose(out["OUTPUT__0"], want.numpy(), rtol=1e-4, atol=1e-4)
        # The classification extension with the same labels as digits.
        r = requests.post(f"{s.url}/v2/models/digits_onnx/infer", json={
            "inputs": [{"name": "INPUT__0", "shape": [1, 1, 8, 8], "datatype": "FP32",
                        "data": x[0].reshape(-1).tolist()}],
            "outputs": [{"name": "OUTPUT__0", "parameters": {"classification": 1}}]}, timeout=10)
        assert r.status_code == 200, r.text
        label = examples.LABELS[int(want[0].argmax())]
        assert r.json()["outputs"][0]["data"][0].endswith(":" + label)


def test_auto_complete_without_config(env):
    server = env[0]
    cfg = model_config(server, "auto_batch")
    assert cfg["backend"] == "onnxruntime" and cfg["platform"] == "onnxruntime_onnx"
    assert cfg["max_batch_size"] == 4  # Triton's default-max-batch-size
    assert "dynamic_batching" in cfg
    assert [(i["name"], i["data_type"], i["dims"]) for i in cfg["input"]] == \
        [("INPUT0", "TYPE_FP32", [3])]
    assert [(o["name"], o["data_type"], o["dims"]) for o in cfg["output"]] == \
        [("OUTPUT0", "TYPE_FP32", [3])]
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    code, out = infer(server, "auto_batch", {"INPUT0": ("FP32", x)})
    assert code == 200, out
    np.testing.assert_array_equal(out["OUTPUT0"], x)

    fixed = model_config(server, "auto_fixed")
    assert fixed["max_batch_size"] == 0
    assert fixed["input"][0]["dims"] == [2, 3] and fixed["input"][0]["data_type"] == "TYPE_INT32"
    assert not fixed.get("dynamic_batching")


def test_auto_complete_partial_config(env):
    server = env[0]
    cfg = model_config(server, "partial_io")
    assert cfg["max_batch_size"] == 2
    assert {i["name"] for i in cfg["input"]} == {"INPUT0", "TEXT_IN"}
    outs = {o["name"]: (o["data_type"], o["dims"]) for o in cfg["output"]}
    assert outs == {"OUTPUT0": ("TYPE_FP32", [4]), "TEXT_OUT": ("TYPE_STRING", [1])}

    cfg = model_config(server, "partial_platform")
    assert cfg["backend"] == "onnxruntime" and cfg["max_batch_size"] == 4
    assert cfg["instance_group"][0]["count"] == 2
    assert cfg["input"][0]["name"] == "INPUT0"

    smallnet = model_config(server, "smallnet")
    assert smallnet["input"][0]["dims"] == [3, 8, 8]
    assert smallnet["output"][0]["dims"] == [5]


@pytest.mark.parametrize("name", ["bad_dim", "bad_type", "bad_name", "bad_out", "bad_batch",
                                  "corrupt", "nofile", "bad_param"])
def test_load_failures_say_why_and_others_keep_serving(env, name):
    server, _, idx = env
    assert idx[name]["state"] == "UNAVAILABLE", idx[name]
    reason = idx[name].get("reason", "")
    for want in BAD[name]:
        assert want in reason, (want, reason)
    assert requests.get(f"{server.url}/v2/models/{name}/ready", timeout=5).status_code != 200
    code, out = infer(server, "dtype_fp32", {"INPUT0": ("FP32", np.ones((1, 3), np.float32))})
    assert code == 200, out


def test_oneflow_layout_and_default_model_filename(env):
    server = env[0]
    x = np.ones((2, 3), np.float32)
    for model in ["oneflow_layout", "named_file", "tuned"]:
        code, out = infer(server, model, {"INPUT0": ("FP32", x)})
        assert code == 200, (model, out)
        np.testing.assert_array_equal(out["OUTPUT0"], x)


@pytest.mark.parametrize("body, words", [
    ({"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]}]},
     ["INPUT0", "INT32", "FP32"]),
    ({"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
     ["INPUT0", "[1,4]"]),
    ({"inputs": [{"name": "NOPE", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
     ["NOPE"]),
])
def test_wrong_dtype_or_shape_is_a_400_naming_the_tensor(env, body, words):
    server = env[0]
    r = requests.post(f"{server.url}/v2/models/dtype_fp32/infer", json=body, timeout=10)
    assert r.status_code == 400, r.text
    for w in words:
        assert w in r.json()["error"], (w, r.text)


def test_onnxruntime_error_answers_that_request_and_the_model_keeps_serving(env):
    server = env[0]
    code, err = infer(server, "reshaper", {"INPUT0": ("FP32", np.ones(4, np.float32))})
    assert code >= 400 and "onnxruntime" in err.lower(), (code, err)
    assert "reshape" in err.lower(), err
    x = np.arange(6, dtype=np.float32)
    code, out = infer(server, "reshaper", {"INPUT0": ("FP32", x)})
    assert code == 200, out
    np.testing.assert_array_equal(out["OUTPUT0"], x.reshape(2, 3))
    assert requests.get(f"{server.url}/v2/models/reshaper/ready", timeout=5).status_code == 200


def _concurrent(server, model, n=16):
    def one(i):
        rows = 1 + i % 3
        x = np.full((rows, 4), float(i), np.float32) + np.arange(4, dtype=np.float32)
        text = np.array([[f"req{i}-{r}".encode()] for r in range(rows)], dtype=np.object_)
        code, out = infer(server, model, {"INPUT0": ("FP32", x), "TEXT_IN": ("BYTES", text)})
        return i, x, text, code, out

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for i, x, text, code, out in results:
        assert code == 200, (i, out)
        np.testing.assert_array_equal(out["OUTPUT0"], x + 1)
        assert out["TEXT_OUT"].tolist() == text.tolist()


def test_concurrent_requests_are_batched_and_split_back(env):
    server = env[0]
    _concurrent(server, "batched")
    sizes = {b["batch_size"] for b in stats(server, "batched")["batch_stats"]}
    assert max(sizes) > 1, sizes


@pytest.mark.parametrize("model", ["shared2", "own2"])
def test_two_instances_serve_concurrent_batches(env, model):
    server = env[0]
    _concurrent(server, model, n=24)
    assert stats(server, model)["inference_stats"]["success"]["count"] >= 24


def test_requested_output_subset(env):
    server = env[0]
    x = np.zeros((1, 4), np.float32)
    text = np.array([[b"t"]], dtype=np.object_)
    code, out = infer(server, "batched", {"INPUT0": ("FP32", x), "TEXT_IN": ("BYTES", text)},
                      outputs=["TEXT_OUT"])
    assert code == 200, out
    assert list(out) == ["TEXT_OUT"]


def test_module_folder_is_self_contained(env):
    server = env[0]
    maps = pathlib.Path(f"/proc/{server.proc.pid}/maps").read_text()
    module_dir = BUILD_BACKENDS / "onnxruntime"
    assert str(module_dir / "libflowserve_onnxruntime.so") in maps
    assert str(module_dir / "libonnxruntime.so.1") in maps
    assert "libtorch" not in maps


# --- servers of their own --------------------------------------------------------------

def test_disable_auto_complete_leaves_the_config_alone(tmp_path):
    identity_onnx(tmp_path / "m" / "1" / "model.onnx", TensorProto.FLOAT)
    (tmp_path / "m" / "config.pbtxt").write_text(
        'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 0\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n')
    with Server(tmp_path, ["--exit-on-error=false", "--disable-auto-complete-config"],
                wait="live") as s:
        idx = wait_settled(s, ["m"])
        assert idx["m"]["state"] == "UNAVAILABLE", idx["m"]
        assert "OUTPUT0" in idx["m"].get("reason", "") or "output" in idx["m"].get("reason", "")


def test_backend_config_default_max_batch_size(tmp_path):
    identity_onnx(tmp_path / "m" / "1" / "model.onnx", TensorProto.FLOAT)
    with Server(tmp_path, ["--backend-config=onnxruntime,default-max-batch-size=16"],
                wait="ready") as s:
        assert model_config(s, "m")["max_batch_size"] == 16


def test_missing_module_fails_only_onnx_models(tmp_path):
    repo = tmp_path / "repo"
    identity_onnx(repo / "m" / "1" / "model.onnx", TensorProto.FLOAT)
    write_model(repo, "ident", 'name: "ident"\nbackend: "identity"\nmax_batch_size: 0\n'
                'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
                'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n')
    empty = tmp_path / "modules"
    empty.mkdir()
    with Server(repo, ["--exit-on-error=false", f"--backend-directory={empty}"],
                wait="live") as s:
        idx = wait_settled(s, ["m", "ident"])
        assert idx["ident"]["state"] == "READY"
        assert idx["m"]["state"] == "UNAVAILABLE"
        assert str(empty / "onnxruntime" / "libflowserve_onnxruntime.so") in idx["m"]["reason"]


def test_module_without_its_onnxruntime_library_reports_the_dlopen_error(tmp_path):
    repo = tmp_path / "repo"
    identity_onnx(repo / "m" / "1" / "model.onnx", TensorProto.FLOAT)
    modules = tmp_path / "modules"
    (modules / "onnxruntime").mkdir(parents=True)
    # The module alone, without the libonnxruntime.so.1 that belongs beside it.
    shutil.copy(BUILD_BACKENDS / "onnxruntime" / "libflowserve_onnxruntime.so",
                modules / "onnxruntime")
    with Server(repo, ["--exit-on-error=false", f"--backend-directory={modules}"],
                wait="live") as s:
        reason = wait_settled(s, ["m"])["m"].get("reason", "")
        assert "libonnxruntime.so.1" in reason and "cannot open shared object" in reason, reason


def test_broken_module_file_reports_the_dlopen_error(tmp_path):
    repo = tmp_path / "repo"
    identity_onnx(repo / "m" / "1" / "model.onnx", TensorProto.FLOAT)
    modules = tmp_path / "modules"
    (modules / "onnxruntime").mkdir(parents=True)
    (modules / "onnxruntime" / "libflowserve_onnxruntime.so").write_bytes(b"not ELF\n" * 64)
    rc, out = run_to_exit(repo, [f"--backend-directory={modules}"])
    assert rc != 0
    assert "libflowserve_onnxruntime.so" in out
    assert "invalid ELF header" in out or "file too short" in out, out
