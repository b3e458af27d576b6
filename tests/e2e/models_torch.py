"""TorchScript models for the pytorch backend's end-to-end tests, built at test time.

Each builder writes <repo>/<name>/{config.pbtxt, 1/...} and returns the path of the saved
module so a test can load the very same file with torch.jit.load for reference outputs.
"""
import pathlib
from typing import Dict

import torch
from torch import nn

from harness import write_model


def _save(module, repo, name, config, example=None, filename="1/model.pt", files=None):
    model_dir = write_model(repo, name, config, files=files)
    path = model_dir / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.trace(module, example) if example is not None else torch.jit.script(module)
    torch.jit.save(scripted, str(path))
    return path


def tensor_io(name, dtype, dims):
    return f'{{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}'


def config(name, inputs, outputs, max_batch_size=0, extra="", backend="pytorch"):
    return (f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: {max_batch_size}\n'
            f'input [ {", ".join(inputs)} ]\noutput [ {", ".join(outputs)} ]\n{extra}\n')


class Affine(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x):
        return torch.tanh(self.linear(x))


class MultiIO(nn.Module):
    def forward(self, a, b):
        return a + b, a * b, (a - b).sum(dim=1, keepdim=True)


class Named(nn.Module):
    def forward(self, data, scale, shift):
        return data * scale + shift


class DictOut(nn.Module):
    def forward(self, x) -> Dict[str, torch.Tensor]:
        return {"plus_one": x + 1, "negated": -x}


class IntBool(nn.Module):
    def forward(self, ids, mask):
        return ids * mask.long() + 7, torch.logical_not(mask)


class Thrower(nn.Module):
    def forward(self, x):
        if bool(x.sum() < 0):
            raise ValueError("negative input is not allowed")
        return x * 3


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        return torch.softmax(self.linear(x), dim=1)


class Doubler(nn.Module):
    def forward(self, x):
        return x * 2


FP32 = "TYPE_FP32"
LABELS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]


def build_good_models(repo):
    """Models that must load. Returns {name: path of the saved TorchScript file}."""
    torch.manual_seed(1234)
    p = {}
    p["affine"] = _save(
        Affine(4, 3), repo, "affine",
        config("affine", [tensor_io("INPUT__0", FP32, [4])], [tensor_io("OUTPUT__0", FP32, [3])],
               max_batch_size=8, extra="dynamic_batching { max_queue_delay_microseconds: 20000 }"),
        example=torch.rand(2, 4))
    p["multi_io"] = _save(
        MultiIO(), repo, "multi_io",
        config("multi_io", [tensor_io("INPUT__1", FP32, [3]), tensor_io("INPUT__0", FP32, [3])],
               [tensor_io(f"OUTPUT__{i}", FP32, d) for i, d in ((0, [3]), (1, [3]), (2, [1]))],
               max_batch_size=4),
        example=(torch.rand(2, 3), torch.rand(2, 3)))
    # Config order differs from forward's; names bind by argument name.
    p["named"] = _save(
        Named(), repo, "named",
        config("named", [tensor_io("shift", FP32, [2]), tensor_io("scale", FP32, [2]),
                         tensor_io("data", FP32, [2])],
               [tensor_io("result", FP32, [2])]))
    # Names that are neither indexed nor argument names bind by config order.
    p["by_order"] = _save(
        Named(), repo, "by_order",
        config("by_order", [tensor_io(n, FP32, [2]) for n in ("alpha", "beta", "gamma")],
               [tensor_io("out", FP32, [2])]))
    p["dict_out"] = _save(
        DictOut(), repo, "dict_out",
        config("dict_out", [tensor_io("INPUT__0", FP32, [-1])],
               [tensor_io("negated", FP32, [-1]), tensor_io("plus_one", FP32, [-1])]))
    p["int_bool"] = _save(
        IntBool(), repo, "int_bool",
        config("int_bool", [tensor_io("INPUT__0", "TYPE_INT64", [5]),
                            tensor_io("INPUT__1", "TYPE_BOOL", [5])],
               [tensor_io("OUTPUT__0", "TYPE_INT64", [5]), tensor_io("OUTPUT__1", "TYPE_BOOL", [5])],
               max_batch_size=8))
    p["thrower"] = _save(
        Thrower(), repo, "thrower",
        config("thrower", [tensor_io("INPUT__0", FP32, [2])], [tensor_io("OUTPUT__0", FP32, [2])]))
    p["classifier"] = _save(
        Classifier(), repo, "classifier",
        config("classifier", [tensor_io("INPUT__0", FP32, [16])],
               [tensor_io("OUTPUT__0", FP32, [10]).replace(" }", ' label_filename: "labels.txt" }')],
               max_batch_size=8),
        example=torch.rand(1, 16), files={"labels.txt": "\n".join(LABELS) + "\n"})
    # OneFlow Serving's layout: an entry named `model` in the version folder, either the
    # TorchScript file itself or a folder holding model.pt.
    doubler_cfg = lambda n: config(n, [tensor_io("INPUT_0", FP32, [2])],  # noqa: E731
                                   [tensor_io("OUTPUT_0", FP32, [2])])
    p["oneflow_file"] = _save(Doubler(), repo, "oneflow_file", doubler_cfg("oneflow_file"),
                              filename="1/model")
    p["oneflow_dir"] = _save(Doubler(), repo, "oneflow_dir", doubler_cfg("oneflow_dir"),
                             filename="1/model/model.pt")
    # Two instances: the second loads its own copy; each gets half of the cores.
    p["two_instances"] = _save(
        Affine(4, 3), repo, "two_instances",
        config("two_instances", [tensor_io("INPUT__0", FP32, [4])],
               [tensor_io("OUTPUT__0", FP32, [3])], max_batch_size=8,
               extra="instance_group [ { count: 2 kind: KIND_CPU } ]"),
        example=torch.rand(2, 4))
    p["unoptimized"] = _save(
        Affine(4, 3), repo, "unoptimized",
        config("unoptimized", [tensor_io("INPUT__0", FP32, [4])],
               [tensor_io("OUTPUT__0", FP32, [3])], max_batch_size=8,
               extra='parameters { key: "DISABLE_OPTIMIZED_EXECUTION" value: { string_value: "true" } }\n'
                     'parameters { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "3" } }'),
        example=torch.rand(2, 4))
    # Config output says INT64; the module returns FP32: a per-request error.
    p["wrong_dtype"] = _save(
        Doubler(), repo, "wrong_dtype",
        config("wrong_dtype", [tensor_io("INPUT__0", FP32, [2])],
               [tensor_io("OUTPUT__0", "TYPE_INT64", [2])]))
    return p


# name -> (substring the load error must contain)
LOAD_ERRORS = {
    "err_too_many_inputs": "forward(x: Tensor) -> Tensor",
    "err_gap": "no gaps",
    "err_too_many_outputs": "forward returns 1 tensor",
    "err_oneflow": "no OneFlow runtime",
    "err_gpu": "KIND_GPU",
    "err_no_file": "no TorchScript model",
    "err_corrupt": "cannot load TorchScript",
    "err_string": "no tensor type",
    "err_xrt": "accepted values",
    "err_unbound_arg": "has no default",
}


def build_broken_models(repo):
    one = lambda n, ins, outs, extra="", backend="pytorch": config(  # noqa: E731
        n, ins, outs, extra=extra, backend=backend)
    x = tensor_io("INPUT__0", FP32, [2])
    y = tensor_io("OUTPUT__0", FP32, [2])
    _save(Doubler(), repo, "err_too_many_inputs",
          one("err_too_many_inputs", [x, tensor_io("INPUT__1", FP32, [2])], [y]))
    _save(MultiIO(), repo, "err_gap",
          one("err_gap", [x, tensor_io("INPUT__2", FP32, [2])], [y]))
    _save(Doubler(), repo, "err_too_many_outputs",
          one("err_too_many_outputs", [x], [y, tensor_io("OUTPUT__1", FP32, [2])]))
    _save(Doubler(), repo, "err_oneflow", one("err_oneflow", [x], [y], backend="oneflow"),
          filename="1/model")
    _save(Doubler(), repo, "err_gpu",
          one("err_gpu", [x], [y], extra="instance_group [ { kind: KIND_GPU count: 1 } ]"))
    write_model(repo, "err_no_file", one("err_no_file", [x], [y]),
                files={"1/weights.bin": b"\0"})
    write_model(repo, "err_corrupt", one("err_corrupt", [x], [y]),
                files={"1/model.pt": b"this is not a zip archive"})
    _save(Doubler(), repo, "err_string",
          one("err_string", [tensor_io("INPUT__0", "TYPE_STRING", [1])], [y]))
    _save(Doubler(), repo, "err_xrt",
          one("err_xrt", [x], [y],
              extra='parameters { key: "xrt" value: { string_value: "cuda-graph" } }'))
    _save(Named(), repo, "err_unbound_arg",
          one("err_unbound_arg", [tensor_io("data", FP32, [2]), tensor_io("scale", FP32, [2])],
              [tensor_io("result", FP32, [2])]))
    return LOAD_ERRORS


def load_reference(path):
    m = torch.jit.load(str(pathlib.Path(path)))
    m.eval()
    return m
