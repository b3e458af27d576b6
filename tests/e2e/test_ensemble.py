"""Ensembles: step graph execution, zero-copy tensor passing, validation, lifecycle."""
import importlib.util
import pathlib
import threading

import numpy as np
import pytest
import requests
import torch
from torch import nn

from harness import Server, identity_config, write_model
from models_torch import FP32, Classifier, LABELS, _save, config, tensor_io

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ensemble_config(name, inputs, outputs, steps, max_batch_size=0):
    def step(model, ins, outs, version=-1):
        im = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in ins.items())
        om = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outs.items())
        return f'{{ model_name: "{model}" model_version: {version} {im} {om} }}'
    return (f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {max_batch_size}\n'
            f'input [ {", ".join(inputs)} ]\noutput [ {", ".join(outputs)} ]\n'
            f'ensemble_scheduling {{ step [ {", ".join(step(*s) for s in steps)} ] }}\n')


def write_ensemble(repo, name, *args, **kw):
    return write_model(repo, name, ensemble_config(name, *args, **kw))


def post(s, model, inputs, outputs=None):
    body = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": dt, "data": a.flatten().tolist()}
                       for n, (a, dt) in inputs.items()]}
    if outputs:
        body["outputs"] = outputs
    return requests.post(f"{s.url}/v2/models/{model}/infer", json=body, timeout=30)


def out(r, name):
    o = next(o for o in r.json()["outputs"] if o["name"] == name)
    return np.array(o["data"], dtype=np.float32).reshape(o["shape"])


def stats(s, model):
    r = requests.get(f"{s.url}/v2/models/{model}/stats").json()
    return r["model_stats"][0]["inference_stats"]


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class Scale(nn.Module):
    def forward(self, x):
        return x * 3.0 - 1.0


def io(name, dims="[ 4 ]", dtype=FP32):
    return f'{{ name: "{name}" data_type: {dtype} dims: {dims} }}'


@pytest.fixture(scope="module")
def torch_repo(tmp_path_factory):
    """A diamond: IN -> scale -> S; IN -> affine -> A; (S, A) -> add -> OUT."""
    repo = tmp_path_factory.mktemp("ens")
    torch.manual_seed(7)
    t4 = lambda n: tensor_io(n, FP32, [4])  # noqa: E731
    paths = {
        "scale": _save(Scale(), repo, "scale", config("scale", [t4("INPUT__0")], [t4("OUTPUT__0")],
                                                       max_batch_size=8)),
        "affine": _save(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), repo, "affine",
                        config("affine", [t4("INPUT__0")], [t4("OUTPUT__0")], max_batch_size=8,
                               extra="dynamic_batching { max_queue_delay_microseconds: 2000 }"),
                        example=torch.rand(2, 4)),
        "add": _save(Add(), repo, "add", config("add", [t4("a"), t4("b")], [t4("OUTPUT__0")],
                                                 max_batch_size=8)),
    }
    write_ensemble(repo, "diamond", [io("IN")], [io("OUT"), io("S")], [
        ("scale", {"INPUT__0": "IN"}, {"OUTPUT__0": "S"}),
        ("affine", {"INPUT__0": "IN"}, {"OUTPUT__0": "A"}),
        ("add", {"a": "S", "b": "A"}, {"OUTPUT__0": "OUT"}),
    ], max_batch_size=8)
    return repo, paths


def test_diamond_matches_steps_called_by_hand(torch_repo):
    repo, _ = torch_repo
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    with Server(repo, wait="ready") as s:
        r = post(s, "diamond", {"IN": (x, "FP32")})
        assert r.status_code == 200, r.text
        assert r.json()["model_name"] == "diamond"
        sv = out(post(s, "scale", {"INPUT__0": (x, "FP32")}), "OUTPUT__0")
        av = out(post(s, "affine", {"INPUT__0": (x, "FP32")}), "OUTPUT__0")
        ov = out(post(s, "add", {"a": (sv, "FP32"), "b": (av, "FP32")}), "OUTPUT__0")
        np.testing.assert_allclose(out(r, "OUT"), ov, rtol=1e-6)
        np.testing.assert_allclose(out(r, "S"), x * 3.0 - 1.0, rtol=1e-6)
        # only the requested output comes back
        r = post(s, "diamond", {"IN": (x, "FP32")}, outputs=[{"name": "S"}])
        assert [o["name"] for o in r.json()["outputs"]] == ["S"]
        # statistics: the ensemble and every composing model count the calls
        assert stats(s, "diamond")["success"]["count"] == 2
        assert stats(s, "scale")["success"]["count"] == 3
        assert stats(s, "add")["success"]["count"] == 3
        # a bad request is refused against the ensemble's own config
        r = post(s, "diamond", {"IN": (x[:, :3], "FP32")})
        assert r.status_code == 400 and "IN" in r.json()["error"]


def test_concurrent_ensemble_requests_are_batched_and_correct(torch_repo):
    repo, paths = torch_repo
    ref = torch.jit.load(str(paths["affine"]))
    with Server(repo, wait="ready") as s:
        errors = []

        def client(k):
            sess = requests.Session()
            for i in range(15):
                x = np.full((1, 4), k + i / 10, dtype=np.float32)
                body = {"inputs": [{"name": "IN", "shape": [1, 4], "datatype": "FP32",
                                    "data": x.flatten().tolist()}]}
                r = sess.post(f"{s.url}/v2/models/diamond/infer", json=body, timeout=30)
                want = (x * 3 - 1) + ref(torch.from_numpy(x)).detach().numpy()
                if r.status_code != 200 or not np.allclose(out(r, "OUT"), want, rtol=1e-5):
                    errors.append(r.text)

        ts = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors[:3]
        st = requests.get(f"{s.url}/v2/models/affine/stats").json()["model_stats"][0]
        # affine waits 2 ms for company: some of the 90 step requests shared a batch
        assert st["execution_count"] < st["inference_count"] == 90


def test_identity_chain_and_composing_model_lifecycle(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    write_model(tmp_path, "b", identity_config("b"))
    write_ensemble(tmp_path, "chain", [io("X", "[ -1 ]")], [io("Y", "[ -1 ]")], [
        ("a", {"INPUT0": "X"}, {"OUTPUT0": "mid"}),
        ("b", {"INPUT0": "mid"}, {"OUTPUT0": "Y"}),
    ])
    x = np.arange(5, dtype=np.float32)
    with Server(tmp_path, ["--model-control-mode=explicit"], wait="ready") as s:
        # loading the ensemble loads its composing models first
        r = requests.post(f"{s.url}/v2/repository/models/chain/load")
        assert r.status_code == 200, r.text
        assert requests.get(f"{s.url}/v2/models/a/ready").status_code == 200
        r = post(s, "chain", {"X": (x, "FP32")})
        assert r.status_code == 200 and out(r, "Y").tolist() == x.tolist()
        # without a composing model the ensemble is unavailable, and says why
        assert requests.post(f"{s.url}/v2/repository/models/b/unload").status_code == 200
        r = post(s, "chain", {"X": (x, "FP32")})
        assert r.status_code in (400, 404, 503)
        assert "chain" in r.json()["error"] and "'b'" in r.json()["error"]
        assert requests.post(f"{s.url}/v2/repository/models/chain/load").status_code == 200
        assert post(s, "chain", {"X": (x, "FP32")}).status_code == 200
        # unload_dependents takes the composing models along
        r = requests.post(f"{s.url}/v2/repository/models/chain/unload",
                          json={"parameters": {"unload_dependents": True}})
        assert r.status_code == 200
        ready = {e["name"] for e in requests.post(f"{s.url}/v2/repository/index",
                                                  json={"ready": True}).json()}
        assert ready == set()


def test_reload_of_composing_model_keeps_ensemble_serving(tmp_path):
    write_model(tmp_path, "a", identity_config("a"))
    write_ensemble(tmp_path, "e", [io("X", "[ -1 ]")], [io("Y", "[ -1 ]")], [
        ("a", {"INPUT0": "X"}, {"OUTPUT0": "Y"})])
    x = np.arange(3, dtype=np.float32)
    with Server(tmp_path, ["--model-control-mode=explicit", "--load-model=e"], wait="ready") as s:
        stop, results = threading.Event(), []

        def loop():
            while not stop.is_set():
                results.append(post(s, "e", {"X": (x, "FP32")}).status_code)

        t = threading.Thread(target=loop)
        t.start()
        for i in range(3):
            (tmp_path / "a" / "config.pbtxt").write_text(identity_config(
                "a", extra=f'parameters {{ key: "rev" value {{ string_value: "{i}" }} }}'))
            assert requests.post(f"{s.url}/v2/repository/models/a/load").status_code == 200
        stop.set()
        t.join()
        assert results and set(results) == {200}, set(results)


VALIDATION = {
    # name: (steps, inputs, outputs, substrings the load error must contain)
    "v_unknown_model": ([("nope", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y"],
                        ["step 0", "'nope'", "not available"]),
    "v_twice": ([("a", {"INPUT0": "X"}, {"OUTPUT0": "Y"}), ("b", {"INPUT0": "X"}, {"OUTPUT0": "Y"})],
                ["X"], ["Y"], ["tensor 'Y'", "produced twice", "step 0", "step 1"]),
    "v_writes_input": ([("a", {"INPUT0": "X"}, {"OUTPUT0": "X"}), ("b", {"INPUT0": "X"}, {"OUTPUT0": "Y"})],
                       ["X"], ["Y"], ["step 0", "'X'", "ensemble input"]),
    "v_cycle": ([("a", {"INPUT0": "T2"}, {"OUTPUT0": "T1"}), ("b", {"INPUT0": "T1"}, {"OUTPUT0": "T2"}),
                 ("c", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y"],
                ["cycle", "step 0", "step 1", "'T1'", "'T2'"]),
    "v_never": ([("a", {"INPUT0": "X"}, {"OUTPUT0": "Y"}), ("b", {"INPUT0": "ghost"}, {"OUTPUT0": "Z"})],
                ["X"], ["Y"], ["'ghost'", "neither an ensemble input nor any step's output"]),
    "v_output_unwritten": ([("a", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y", "W"],
                           ["'W'", "not produced"]),
    "v_input_unread": ([("a", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X", "UNUSED"], ["Y"],
                       ["'UNUSED'", "not read by any step"]),
    "v_dtype": ([("i32", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y"],
                ["tensor 'X'", "FP32", "INT32", "step 0"]),
    "v_shape": ([("fixed3", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y"],
                ["tensor 'X'", "shape", "step 0", "fixed3"]),
    "v_bad_map_name": ([("a", {"NOPE": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y"],
                       ["step 0", "'NOPE'", "not an input"]),
    "v_bad_output_name": ([("a", {"INPUT0": "X"}, {"NOPE": "Y"})], ["X"], ["Y"],
                          ["step 0", "'NOPE'", "not an output"]),
    "v_missing_model_input": ([("two_in", {"INPUT0": "X"}, {"OUTPUT0": "Y"})], ["X"], ["Y"],
                              ["step 0", "'INPUT1'", "not in the step's input_map"]),
}


def test_every_validation_error_names_step_and_tensor(tmp_path):
    for n in "abc":
        write_model(tmp_path, n, identity_config(n))
    write_model(tmp_path, "i32", identity_config("i32", dtype="TYPE_INT32"))
    write_model(tmp_path, "fixed3", identity_config("fixed3", dims="[ 3 ]"))
    write_model(tmp_path, "two_in", identity_config("two_in").replace(
        "input [", 'input [ { name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] },'))
    for name, (steps, ins, outs, _) in VALIDATION.items():
        write_ensemble(tmp_path, name, [io(i, "[ 4 ]") for i in ins],
                       [io(o, "[ 4 ]") for o in outs], steps)
    with Server(tmp_path, ["--exit-on-error=false"], wait="live") as s:
        s.wait_for("live")
        idx = requests.post(f"{s.url}/v2/repository/index").json()
        reasons = {e["name"]: e.get("reason", "") for e in idx if e["state"] != "READY"}
        for name, (_, _, _, want) in VALIDATION.items():
            assert name in reasons, (name, idx)
            for w in want:
                assert w in reasons[name], (name, w, reasons[name])
        # the composing models themselves are fine
        assert requests.get(f"{s.url}/v2/models/a/ready").status_code == 200


def test_digits_pipeline_example(tmp_path):
    """The example's ensemble against its two steps by hand, on a stand-in `digits`."""
    spec = importlib.util.spec_from_file_location("pipeline_models",
                                                  ROOT / "examples" / "pipeline_models.py")
    pm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pm)
    torch.manual_seed(3)

    class Digits(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = Classifier()

        def forward(self, x):
            return self.c(x.reshape(x.shape[0], 64)[:, :16] * 4)

    _save(Digits(), tmp_path, "digits",
          config("digits", [tensor_io("INPUT__0", FP32, [1, 8, 8])],
                 [tensor_io("OUTPUT__0", FP32, [10]).replace(" }", ' label_filename: "labels.txt" }')],
                 max_batch_size=8, extra="dynamic_batching { }"),
          example=torch.rand(2, 1, 8, 8), files={"labels.txt": "\n".join(LABELS) + "\n"})
    pm.build_pipeline(tmp_path)
    img = np.random.default_rng(1).integers(0, 256, size=(2, 8, 8), dtype=np.uint8)
    with Server(tmp_path, wait="ready") as s:
        r = post(s, "digits_pipeline", {"IMAGE": (img, "UINT8")})
        assert r.status_code == 200, r.text
        pixels = (img.astype(np.float32) / 255.0).reshape(2, 1, 8, 8)
        want = out(post(s, "digits", {"INPUT__0": (pixels, "FP32")}), "OUTPUT__0")
        np.testing.assert_allclose(out(r, "SCORES"), want, rtol=1e-5)
        r = post(s, "digits_pipeline", {"IMAGE": (img[:1], "UINT8")},
                 outputs=[{"name": "SCORES", "parameters": {"classification": 2}}])
        top = r.json()["outputs"][0]["data"]
        assert len(top) == 2 and top[0].split(":")[2] == LABELS[int(np.argmax(want[0]))]
