"""Backends as modules: a framework's library is mapped only when a model needs it, a
module that cannot be loaded fails only the models that name it, and config auto-complete
asks the model's backend (here the pytorch module) what the config leaves out."""
import os
import pathlib
import shutil

import requests
import torch

import models_torch
from harness import BIN, Server, identity_config, run_to_exit, write_model

BUILD_BACKENDS = pathlib.Path(BIN).resolve().parent / "backends"


def _maps(server):
    return pathlib.Path(f"/proc/{server.proc.pid}/maps").read_text()


def _index(server):
    r = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=10)
    r.raise_for_status()
    return {m["name"]: m for m in r.json()}


def _affine(repo, name="affine", config=True):
    cfg = models_torch.config(name, [models_torch.tensor_io("INPUT__0", "TYPE_FP32", [4])],
                              [models_torch.tensor_io("OUTPUT__0", "TYPE_FP32", [3])])
    return models_torch._save(models_torch.Affine(4, 3), repo, name, cfg if config else None,
                              example=torch.rand(1, 4))


def test_identity_only_server_maps_no_framework_until_a_model_needs_it(tmp_path):
    write_model(tmp_path, "ident", identity_config("ident"))
    _affine(tmp_path / "later")  # outside the repository until the test moves it in
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=ident"],
                wait="ready") as s:
        maps = _maps(s)
        assert "libtorch" not in maps and "libflowserve_pytorch" not in maps
        assert "onnxruntime" not in maps
        shutil.move(str(tmp_path / "later" / "affine"), str(tmp_path / "affine"))
        r = requests.post(f"{s.url}/v2/repository/models/affine/load", timeout=60)
        assert r.status_code == 200, r.text
        maps = _maps(s)
        assert "libflowserve_pytorch.so" in maps and "libtorch" in maps
        assert "onnxruntime" not in maps
        assert "loaded backend 'pytorch' from" in s.log()


def test_missing_module_fails_only_its_models_and_names_the_path(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "ident", identity_config("ident"))
    _affine(repo)
    empty = tmp_path / "modules"
    empty.mkdir()
    with Server(repo, ["--exit-on-error=false", f"--backend-directory={empty}"],
                wait="live") as s:
        idx = _index(s)
        assert idx["ident"]["state"] == "READY"
        assert idx["affine"]["state"] == "UNAVAILABLE"
        want = str(empty / "pytorch" / "libflowserve_pytorch.so")
        assert want in idx["affine"]["reason"], idx["affine"]
        assert requests.get(f"{s.url}/v2/models/ident/ready").status_code == 200


def test_module_that_does_not_load_reports_the_dlopen_error(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "ident", identity_config("ident"))
    _affine(repo)
    modules = tmp_path / "modules"
    (modules / "pytorch").mkdir(parents=True)
    (modules / "pytorch" / "libflowserve_pytorch.so").write_bytes(b"not an ELF file\n" * 64)
    with Server(repo, ["--exit-on-error=false", f"--backend-directory={modules}"],
                wait="live") as s:
        reason = _index(s)["affine"]["reason"]
        assert "cannot load" in reason and "libflowserve_pytorch.so" in reason, reason
        assert "invalid ELF header" in reason or "file too short" in reason, reason
        assert requests.get(f"{s.url}/v2/models/ident/ready").status_code == 200


def test_library_without_the_entry_point_is_not_a_module(tmp_path):
    repo = tmp_path / "repo"
    _affine(repo)
    modules = tmp_path / "modules"
    (modules / "pytorch").mkdir(parents=True)
    # A real shared library, but not a backend module.
    shutil.copy(pathlib.Path(BIN).resolve().parent / "libflowserve_common.so",
                modules / "pytorch" / "libflowserve_pytorch.so")
    rc, out = run_to_exit(repo, [f"--backend-directory={modules}"])
    assert rc != 0
    assert "is not a flowserve backend module" in out and "FlowserveBackendCreate" in out, out


def test_default_backend_directory_is_beside_the_binary(tmp_path):
    _affine(tmp_path)
    assert (BUILD_BACKENDS / "pytorch" / "libflowserve_pytorch.so").exists()
    with Server(tmp_path, [], wait="ready") as s:
        assert f"loaded backend 'pytorch' from {BUILD_BACKENDS}" in s.log()


def test_torchscript_without_tensors_in_config_says_what_to_add(tmp_path):
    _affine(tmp_path, "noconfig", config=False)
    write_model(tmp_path, "partial", 'backend: "pytorch"\nmax_batch_size: 4\n')
    models_torch._save(models_torch.Affine(4, 3), tmp_path, "partial", None,
                       example=torch.rand(1, 4))
    with Server(tmp_path, ["--exit-on-error=false"], wait="live") as s:
        idx = _index(s)
        for name in ("noconfig", "partial"):
            reason = idx[name]["reason"]
            assert idx[name]["state"] == "UNAVAILABLE"
            assert "does not record data types or dims" in reason, reason
            assert "forward(x: Tensor) -> Tensor" in reason, reason
            assert 'input [ { name: "x" data_type: <TYPE>' in reason, reason
            assert 'output [ { name: "OUTPUT__0" data_type: <TYPE>' in reason, reason


def test_disable_auto_complete_skips_the_backend(tmp_path):
    write_model(tmp_path, "partial", 'backend: "pytorch"\nmax_batch_size: 4\n')
    models_torch._save(models_torch.Affine(4, 3), tmp_path, "partial", None,
                       example=torch.rand(1, 4))
    with Server(tmp_path, ["--exit-on-error=false", "--disable-auto-complete-config"],
                wait="live") as s:
        reason = _index(s)["partial"]["reason"]
        assert "does not record data types" not in reason, reason


class AddSub(torch.nn.Module):
    """Triton's `simple` example model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

    def forward(self, a, b):
        return a + b, a - b


def write_onnx_simple(repo):
    """The `simple` model of tritonclient's examples, as an ONNX file and nothing else."""
    path = pathlib.Path(repo) / "simple" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    x = torch.zeros(1, 16, dtype=torch.int32)
    axes = {n: {0: "batch"} for n in ("INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1")}
    torch.onnx.export(AddSub(), (x, x), str(path), input_names=["INPUT0", "INPUT1"],
                      output_names=["OUTPUT0", "OUTPUT1"], dynamic_axes=axes)


def test_reload_with_a_partial_config_override_completes_it_from_the_model(tmp_path):
    """tritonclient's model-control examples reload `simple` with {"max_batch_size":"16"}."""
    write_onnx_simple(tmp_path)
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=simple",
                           "--log-verbose=1"], wait="ready") as s:
        # Reading the tensors opened the session the model then serves with: one open.
        assert "model 'simple' version 1: serving with the session auto-complete opened" in s.log()
        cfg = requests.get(f"{s.url}/v2/models/simple/config").json()
        assert cfg["backend"] == "onnxruntime" and cfg["max_batch_size"] == 4
        assert [(i["name"], i["data_type"], i["dims"]) for i in cfg["input"]] == [
            ("INPUT0", "TYPE_INT32", [16]), ("INPUT1", "TYPE_INT32", [16])]
        r = requests.post(f"{s.url}/v2/repository/models/simple/load",
                          json={"parameters": {"config": '{"max_batch_size":"16"}'}})
        assert r.status_code == 200, r.text
        cfg = requests.get(f"{s.url}/v2/models/simple/config").json()
        assert cfg["max_batch_size"] == 16 and len(cfg["output"]) == 2
        a = list(range(16))
        body = {"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": a}
                           for n in ("INPUT0", "INPUT1")]}
        out = requests.post(f"{s.url}/v2/models/simple/infer", json=body).json()["outputs"]
        assert {o["name"]: o["data"] for o in out} == {"OUTPUT0": [2 * v for v in a],
                                                       "OUTPUT1": [0] * 16}
