"""Triton's per-model config features applied by the core, whatever the backend:
`reshape` (the model sees the reshaped input, the client the declared output shape) and
`model_warmup` (samples run on every instance before the model is ready)."""
import numpy as np
import pytest
import requests
import torch

import grpc_stubs
import models_torch
from harness import Server, write_model


def _identity(name, in_dims, out_dims, max_batch_size=0, in_extra="", out_extra="", extra="",
              out_type="TYPE_FP32"):
    return f"""
name: "{name}"
backend: "identity"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: {in_dims} {in_extra} }} ]
output [ {{ name: "OUTPUT0" data_type: {out_type} dims: {out_dims} {out_extra} }} ]
{extra}
"""


RESHAPE_MODELS = {
    # identity hands the model's input back: its output shape is what the model saw.
    "in_reshape": _identity("in_reshape", "[ 4 ]", "[ 2, 2 ]", in_extra="reshape { shape: [ 2, 2 ] }"),
    "out_reshape": _identity("out_reshape", "[ 2, 2 ]", "[ 4 ]", out_extra="reshape { shape: [ 2, 2 ] }"),
    "batched": _identity("batched", "[ 4 ]", "[ 2, 2 ]", max_batch_size=8,
                         in_extra="reshape { shape: [ 2, 2 ] }"),
    "variable": _identity("variable", "[ -1 ]", "[ -1, 1 ]", in_extra="reshape { shape: [ -1, 1 ] }"),
    "both": _identity("both", "[ 6 ]", "[ 6 ]", in_extra="reshape { shape: [ 2, 3 ] }",
                      out_extra="reshape { shape: [ 2, 3 ] }"),
}


@pytest.fixture(scope="module")
def reshape_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("reshape")
    for name, cfg in RESHAPE_MODELS.items():
        write_model(repo, name, cfg)
    with Server(repo, wait="ready") as s:
        yield s


def _infer(server, model, arr):
    body = {"inputs": [{"name": "INPUT0", "shape": list(arr.shape), "datatype": "FP32",
                        "data": arr.flatten().tolist()}]}
    r = requests.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return out["shape"], out["data"]


@pytest.mark.parametrize("model,shape,want", [
    ("in_reshape", [4], [2, 2]),
    ("out_reshape", [2, 2], [4]),
    ("batched", [3, 4], [3, 2, 2]),
    ("variable", [5], [5, 1]),
    ("both", [6], [6]),
])
def test_reshape_over_http(reshape_server, model, shape, want):
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    got_shape, data = _infer(reshape_server, model, arr)
    assert got_shape == want
    assert data == arr.flatten().tolist()


def test_reshape_over_grpc(reshape_server):
    import grpc
    pb2, pb2_grpc = grpc_stubs.load()
    with grpc.insecure_channel(reshape_server.grpc_url) as ch:
        stub = pb2_grpc.GRPCInferenceServiceStub(ch)
        arr = np.arange(8, dtype=np.float32)
        req = pb2.ModelInferRequest(model_name="batched")
        req.inputs.add(name="INPUT0", datatype="FP32", shape=[2, 4])
        req.raw_input_contents.append(arr.tobytes())
        resp = stub.ModelInfer(req, timeout=10)
        assert list(resp.outputs[0].shape) == [2, 2, 2]
        assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == arr.tolist()


def test_reshape_keeps_request_validation_on_the_declared_dims(reshape_server):
    body = {"inputs": [{"name": "INPUT0", "shape": [2, 2], "datatype": "FP32",
                        "data": [1, 2, 3, 4]}]}
    r = requests.post(f"{reshape_server.url}/v2/models/in_reshape/infer", json=body, timeout=10)
    assert r.status_code == 400
    assert "INPUT0" in r.json()["error"] and "[4]" in r.json()["error"]


WARM = 'model_warmup [ {{ name: "{name}" batch_size: {batch} count: {count} inputs {{ key: "{input}" value: {{ data_type: {dtype} dims: [ 4 ] {data} }} }} }} ]'


def _warm(name, data="zero_data: true", batch=1, count=1, input="INPUT0", dtype="TYPE_FP32"):
    return WARM.format(name=name, data=data, batch=batch, count=count, input=input, dtype=dtype)


def _index(server):
    r = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=10)
    return {m["name"]: m for m in r.json()}


def test_warmup_runs_every_sample_on_every_instance_before_ready(tmp_path):
    samples = "\n".join([
        'model_warmup [',
        '  { name: "zeros" batch_size: 2 count: 3 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } },',
        '  { name: "noise" batch_size: 1 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } },',
        '  { name: "file" batch_size: 4 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "row.bin" } } }',
        ']'])
    write_model(tmp_path, "warm", _identity("warm", "[ 4 ]", "[ 4 ]", max_batch_size=4,
                                            extra="instance_group [ { count: 2 } ]\n" + samples),
                files={"warmup/row.bin": np.arange(4, dtype=np.float32).tobytes()})
    with Server(tmp_path, ["--log-verbose=1"], wait="ready") as s:
        log = s.log()
        for inst in ("warm_0_0", "warm_0_1"):  # group warm_0, two instances
            assert f"warming up 'warm' instance {inst} with model_warmup sample 'zeros' (3 run(s))" in log
            assert f"instance {inst} with model_warmup sample 'noise' (1 run(s))" in log
            assert f"instance {inst} with model_warmup sample 'file' (1 run(s))" in log
        # Warmup is not traffic: the statistics start at zero.
        stats = requests.get(f"{s.url}/v2/models/warm/stats").json()["model_stats"][0]
        assert stats["inference_count"] == 0


@pytest.mark.parametrize("extra,files,fragments", [
    # identity refuses an output type that differs from the input: every execution fails.
    (_warm("typed"), {}, ["model_warmup sample 'typed' failed on instance", "OUTPUT0"]),
    (_warm("nope", input="NOPE"), {}, ["model_warmup sample 'nope'", "unexpected inference input 'NOPE'"]),
    (_warm("nofile", data='input_data_file: "missing.bin"'), {},
     ["model_warmup sample 'nofile'", "warmup/missing.bin"]),
    (_warm("short", data='input_data_file: "short.bin"'), {"warmup/short.bin": b"\0" * 7},
     ["model_warmup sample 'short'", "short.bin has 7 bytes", "[4]"]),
])
def test_failing_warmup_fails_only_that_model_with_the_sample_name(tmp_path, extra, files,
                                                                   fragments):
    out_type = "TYPE_INT32" if "typed" in extra else "TYPE_FP32"
    write_model(tmp_path, "bad", _identity("bad", "[ 4 ]", "[ 4 ]", extra=extra, out_type=out_type),
                files=files)
    write_model(tmp_path, "good", _identity("good", "[ 4 ]", "[ 4 ]", extra=_warm("fine")))
    with Server(tmp_path, ["--exit-on-error=false"], wait="live") as s:
        idx = _index(s)
        assert idx["good"]["state"] == "READY"
        assert idx["bad"]["state"] == "UNAVAILABLE"
        for f in fragments:
            assert f in idx["bad"]["reason"], idx["bad"]["reason"]


def test_warmup_on_a_torchscript_model(tmp_path):
    cfg = models_torch.config(
        "affine", [models_torch.tensor_io("INPUT__0", "TYPE_FP32", [4])],
        [models_torch.tensor_io("OUTPUT__0", "TYPE_FP32", [3])], max_batch_size=8,
        extra=_warm("noise", data="random_data: true", batch=8, input="INPUT__0"))
    models_torch._save(models_torch.Affine(4, 3), tmp_path, "affine", cfg, example=torch.rand(1, 4))
    wrong = cfg.replace('"affine"', '"wrong"').replace("dims: [ 4 ] random", "dims: [ 5 ] random")
    wrong = wrong.replace('data_type: TYPE_FP32 dims: [ 4 ] }', 'data_type: TYPE_FP32 dims: [ -1 ] }', 1)
    models_torch._save(models_torch.Affine(4, 3), tmp_path, "wrong", wrong, example=torch.rand(1, 4))
    with Server(tmp_path, ["--exit-on-error=false", "--log-verbose=1"], wait="live") as s:
        idx = _index(s)
        assert idx["affine"]["state"] == "READY", idx["affine"]
        assert "instance affine_0 with model_warmup sample 'noise'" in s.log()
        # The module multiplies by a 4x3 weight: a [8, 5] sample fails inside LibTorch.
        assert idx["wrong"]["state"] == "UNAVAILABLE"
        assert "model_warmup sample 'noise' failed on instance wrong_0" in idx["wrong"]["reason"]


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


def test_reshape_on_an_onnx_model_with_fixed_shapes(tmp_path):
    """The ONNX file takes and returns [2, 2] (batched: [b, 2, 2]); clients speak [4]."""
    for name, mbs in (("fixed", 0), ("fixed_batched", 4)):
        path = tmp_path / name / "1" / "model.onnx"
        path.parent.mkdir(parents=True)
        example = torch.rand(2, 2) if mbs == 0 else torch.rand(1, 2, 2)
        axes = {} if mbs == 0 else {"INPUT0": {0: "b"}, "OUTPUT0": {0: "b"}}
        torch.onnx.export(Double(), example, str(path), input_names=["INPUT0"],
                          output_names=["OUTPUT0"], dynamic_axes=axes)
        (tmp_path / name / "config.pbtxt").write_text(f"""
backend: "onnxruntime"
max_batch_size: {mbs}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] reshape {{ shape: [ 2, 2 ] }} }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] reshape {{ shape: [ 2, 2 ] }} }} ]
""")
    with Server(tmp_path, wait="ready") as s:
        got = _infer(s, "fixed", np.arange(4, dtype=np.float32))
        assert got == ([4], [0.0, 2.0, 4.0, 6.0])
        got = _infer(s, "fixed_batched", np.arange(8, dtype=np.float32).reshape(2, 4))
        assert got == ([2, 4], [2.0 * v for v in range(8)])
