#!/usr/bin/python3
"""Adds the `digits_pipeline` ensemble to a model repository that already has `digits`.

  digits_preprocess  TorchScript: UINT8 [N, 8, 8] raw pixels -> FP32 [N, 1, 8, 8] in [0, 1],
                     the layout and scale `digits` was trained on
  digits_pipeline    ensemble: IMAGE -> digits_preprocess -> digits -> SCORES (with labels),
                     so a client sends raw pixels and gets class scores

  /usr/bin/python3 examples/pipeline_models.py --out model_repository
build_repository.py calls build_pipeline() after it built `digits`.
"""
import argparse
import hashlib
import pathlib

LABELS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
MAX_BATCH = 8

PREPROCESS_CONFIG = f"""name: "digits_preprocess"
backend: "pytorch"
max_batch_size: {MAX_BATCH}
input [ {{ name: "INPUT__0" data_type: TYPE_UINT8 dims: [ 8, 8 ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""

PIPELINE_CONFIG = f"""name: "digits_pipeline"
platform: "ensemble"
max_batch_size: {MAX_BATCH}
input [ {{ name: "IMAGE" data_type: TYPE_UINT8 dims: [ 8, 8 ] }} ]
output [ {{ name: "SCORES" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" }} ]
ensemble_scheduling {{
  step [
    {{
      model_name: "digits_preprocess"
      model_version: -1
      input_map {{ key: "INPUT__0" value: "IMAGE" }}
      output_map {{ key: "OUTPUT__0" value: "pixels" }}
    }},
    {{
      model_name: "digits"
      model_version: -1
      input_map {{ key: "INPUT__0" value: "pixels" }}
      output_map {{ key: "OUTPUT__0" value: "SCORES" }}
    }}
  ]
}}
"""


def preprocess_module():
    import torch
    from torch import nn

    class Preprocess(nn.Module):
        """8-bit grayscale pixels to the [0, 1] floats `digits` was trained on, with the
        channel dim its first convolution expects."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.to(torch.float32) / 255.0).unsqueeze(1)

    return torch.jit.script(Preprocess())


def _stamp():
    return hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()


def build_pipeline(out, force=False):
    """Writes digits_preprocess and digits_pipeline under `out` (a pathlib.Path)."""
    out = pathlib.Path(out)
    pre, pipe = out / "digits_preprocess", out / "digits_pipeline"
    stamp = _stamp()
    stamps = [pre / ".build-stamp", pipe / ".build-stamp"]
    if not force and all(s.exists() and s.read_text() == stamp for s in stamps) and \
            (pre / "1" / "model.pt").exists():
        print("digits_pipeline: up to date")
        return
    import torch

    (pre / "1").mkdir(parents=True, exist_ok=True)
    torch.jit.save(preprocess_module(), str(pre / "1" / "model.pt"))
    (pre / "config.pbtxt").write_text(PREPROCESS_CONFIG)
    (pipe / "1").mkdir(parents=True, exist_ok=True)  # an ensemble's version folder is empty
    (pipe / "config.pbtxt").write_text(PIPELINE_CONFIG)
    (pipe / "labels.txt").write_text("\n".join(LABELS) + "\n")
    for s in stamps:
        s.write_text(stamp)
    print("digits_pipeline: written (digits_preprocess -> digits)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="model repository folder holding `digits`")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args()
    build_pipeline(pathlib.Path(args.out), args.force)


if __name__ == "__main__":
    main()
