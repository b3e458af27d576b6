#!/usr/bin/python3
"""Builds the example model repository that `make serve` serves, with no download.

  digits    a small CNN trained here on scikit-learn's bundled 8x8 digits (train split)
  digits_onnx  the same trained network exported to ONNX (torch.onnx.export), served by
            the onnxruntime backend
  identity  the identity backend, for benchmarks of the server itself
  resnet50  (--resnet50) torchvision's ResNet-50 with random weights, for benchmarks
  resnet50_onnx  (--resnet50) the same ResNet-50 exported to ONNX
  digits_image  an ensemble: a Python model (python_models.py) decodes an image file for digits
  stylize   an image-to-image network (stylize_model.py) trained here to reproduce a poster
            style: [3, H, W] FP32 0..255 in and out, any height and width
  stylize_onnx  the same trained network exported to ONNX with dynamic batch/height/width

Also writes a few digit PNGs from the test split and stylize_sample.png into examples/data/
for the clients.
A model whose stamp matches this script is not rebuilt, so repeated runs take
well under a second.
"""
import argparse
import hashlib
import pathlib
import sys
import time
import warnings

HERE = pathlib.Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
LABELS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
SEED = 0
DIGITS_MAX_BATCH = 8

DIGITS_CONFIG = f"""name: "digits"
backend: "pytorch"
max_batch_size: {DIGITS_MAX_BATCH}
input [
  {{
    name: "INPUT__0"
    data_type: TYPE_FP32
    dims: [ 1, 8, 8 ]
  }}
]
output [
  {{
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ 10 ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
# A forward pass takes ~60 us: a second OpenMP thread costs more in hand-offs than it
# saves, and stalls badly when the other core is busy (bench/pytorch_vs_raw.sh).
parameters {{ key: "INTRA_OP_THREAD_COUNT" value: {{ string_value: "1" }} }}
"""

# The same network and labels as digits, exported to ONNX with a dynamic batch axis.
DIGITS_ONNX_CONFIG = f"""name: "digits_onnx"
backend: "onnxruntime"
max_batch_size: {DIGITS_MAX_BATCH}
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
# Tiny tensors: a second intra-op thread costs more in hand-offs than it saves.
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
"""

IDENTITY_CONFIG = """name: "identity"
backend: "identity"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
dynamic_batching { }
"""

RESNET50_CONFIG = """name: "resnet50"
backend: "pytorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1000 ] } ]
dynamic_batching { }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

RESNET50_ONNX_CONFIG = """name: "resnet50_onnx"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1000 ] } ]
dynamic_batching { }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def script_stamp(extra):
    h = hashlib.sha256(pathlib.Path(__file__).read_bytes())
    h.update(extra.encode())
    return h.hexdigest()


def up_to_date(model_dir, stamp, files):
    s = model_dir / ".build-stamp"
    return s.exists() and s.read_text() == stamp and all((model_dir / f).exists() for f in files)


def write_stamp(model_dir, stamp):
    (model_dir / ".build-stamp").write_text(stamp)


def digits_model():
    import torch
    from torch import nn

    class DigitsNet(nn.Module):
        """Input: [N, 1, 8, 8] pixel intensities in [0, 1]. Output: class probabilities."""

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
                                      nn.Linear(64, 10))

        def forward(self, x):
            return torch.softmax(self.head(self.features(x)), dim=1)

    return DigitsNet()


def digits_split():
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    return train_test_split(x, d.target, test_size=0.25, random_state=SEED, stratify=d.target)


def build_digits(out, force):
    model_dir = out / "digits"
    stamp = script_stamp("digits")
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "labels.txt", "1/model.pt"]):
        print("digits: up to date")
        return
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    start = time.time()
    x_train, x_test, y_train, y_test = digits_split()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    net = digits_model()
    # Train on logits: the saved module ends in softmax, so strip it for the loss.
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(25):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            logits = net.head(net.features(xt[idx]))
            loss_fn(logits, yt[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    accuracy = float((pred == y_test).mean())

    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    traced = torch.jit.trace(net, torch.from_numpy(x_test[:2]))
    torch.jit.save(traced, str(model_dir / "1" / "model.pt"))
    (model_dir / "config.pbtxt").write_text(DIGITS_CONFIG)
    (model_dir / "labels.txt").write_text("\n".join(LABELS) + "\n")
    write_stamp(model_dir, stamp)
    print(f"digits: trained in {time.time() - start:.1f}s, test accuracy {accuracy:.3f} "
          f"({len(y_test)} held-out images)")
    if accuracy < 0.95:
        print("digits: WARNING accuracy below 0.95", file=sys.stderr)


def export_onnx(torchscript_path, onnx_path, example):
    """Exports a saved TorchScript module to ONNX with a dynamic batch axis, so the ONNX
    model carries exactly the weights the TorchScript one does."""
    import torch

    module = torch.jit.load(str(torchscript_path)).eval()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # Exporting a ScriptModule: torch notes it cannot read the forward's Python
        # signature, which only matters for keyword inputs.
        warnings.filterwarnings("ignore", message="no signature found")
        torch.onnx.export(module, example, str(tmp), input_names=["INPUT__0"],
                          output_names=["OUTPUT__0"], opset_version=13,
                          dynamic_axes={"INPUT__0": {0: "batch"}, "OUTPUT__0": {0: "batch"}})
    tmp.replace(onnx_path)


def build_digits_onnx(out, force):
    model_dir = out / "digits_onnx"
    source = out / "digits" / "1" / "model.pt"
    stamp = script_stamp("digits_onnx" + (out / "digits" / ".build-stamp").read_text())
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "labels.txt", "1/model.onnx"]):
        print("digits_onnx: up to date")
        return
    import torch

    export_onnx(source, model_dir / "1" / "model.onnx", torch.zeros(2, 1, 8, 8))
    (model_dir / "config.pbtxt").write_text(DIGITS_ONNX_CONFIG)
    (model_dir / "labels.txt").write_text("\n".join(LABELS) + "\n")
    write_stamp(model_dir, stamp)
    print("digits_onnx: exported from digits/1/model.pt")


def build_resnet50_onnx(out, force):
    model_dir = out / "resnet50_onnx"
    source = out / "resnet50" / "1" / "model.pt"
    stamp = script_stamp("resnet50_onnx" + (out / "resnet50" / ".build-stamp").read_text())
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "1/model.onnx"]):
        print("resnet50_onnx: up to date")
        return
    import torch

    export_onnx(source, model_dir / "1" / "model.onnx", torch.zeros(1, 3, 224, 224))
    (model_dir / "config.pbtxt").write_text(RESNET50_ONNX_CONFIG)
    write_stamp(model_dir, stamp)
    print("resnet50_onnx: exported from resnet50/1/model.pt")


def write_digit_pngs():
    """One PNG per class from the test split: 8x8 scaled x4 (nearest) so it is viewable."""
    if all((DATA_DIR / f"digit_{label}.png").exists() for label in range(10)):
        return
    from PIL import Image
    import numpy as np

    _, x_test, _, y_test = digits_split()
    DATA_DIR.mkdir(exist_ok=True)
    for label in range(10):
        path = DATA_DIR / f"digit_{label}.png"
        if path.exists():
            continue
        i = int(np.nonzero(y_test == label)[0][0])
        pixels = np.rint(x_test[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").resize((32, 32), Image.NEAREST).save(path)


def build_stylize(out, force):
    import stylize_model
    stylize_model.build_stylize(out, force, script_stamp, up_to_date, write_stamp)
    stylize_model.build_stylize_onnx(out, force, script_stamp, up_to_date, write_stamp)
    stylize_model.write_sample(DATA_DIR)


def build_identity(out, force):
    model_dir = out / "identity"
    stamp = script_stamp("identity")
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "1"]):
        print("identity: up to date")
        return
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(IDENTITY_CONFIG)
    write_stamp(model_dir, stamp)
    print("identity: written")


def build_resnet50(out, force):
    model_dir = out / "resnet50"
    stamp = script_stamp("resnet50")
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "1/model.pt"]):
        print("resnet50: up to date")
        return
    import torch
    import torchvision

    torch.manual_seed(SEED)
    net = torchvision.models.resnet50(weights=None).eval()
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(1, 3, 224, 224))
    torch.jit.save(traced, str(model_dir / "1" / "model.pt"))
    (model_dir / "config.pbtxt").write_text(RESNET50_CONFIG)
    write_stamp(model_dir, stamp)
    print("resnet50: written (random weights)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="model repository folder to fill")
    p.add_argument("--resnet50", action="store_true",
                   help="also build resnet50 and resnet50_onnx (~100 MB each)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    build_digits(out, args.force)
    build_digits_onnx(out, args.force)
    build_identity(out, args.force)
    if args.resnet50:
        build_resnet50(out, args.force)
        build_resnet50_onnx(out, args.force)
    write_digit_pngs()
    build_stylize(out, args.force)
    from pipeline_models import build_pipeline  # digits_pipeline: an ensemble feeding digits
    build_pipeline(out, args.force)
    from python_models import build_python_models  # digits_image: Python decode -> digits
    build_python_models(out, args.force)


if __name__ == "__main__":
    main()
