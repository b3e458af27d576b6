#!/usr/bin/python3
"""Adds the `digits_image` ensemble (Python pre-processing) to a repository that has `digits`.

  digits_decode   backend "python" (model.py, Triton's API): BYTES [N, 1] encoded image
                  files (PNG, JPEG, anything PIL reads) -> FP32 [N, 1, 8, 8] in [0, 1]:
                  grayscale, box-resized to 8x8, scaled by 1/255 -- exactly what
                  examples/clients/classify.py does on the client for `digits`
  digits_image    ensemble: IMAGE (the file's bytes) -> digits_decode -> digits -> SCORES
                  (with labels), so a client sends the file as it is

  /usr/bin/python3 examples/python_models.py --out model_repository
  /usr/bin/python3 examples/clients/classify.py --raw examples/data/digit_3.png
build_repository.py calls build_python_models() after it built `digits`.
"""
import argparse
import hashlib
import pathlib

LABELS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
MAX_BATCH = 8

DECODE_CONFIG = f"""name: "digits_decode"
backend: "python"
max_batch_size: {MAX_BATCH}
input [ {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "PIXELS" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""

DECODE_MODEL = '''"""Decodes image files for `digits`: BYTES [N, 1] -> FP32 [N, 1, 8, 8] in [0, 1]."""
import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image


def decode(data):
    # The client-side pre-processing of examples/clients/classify.py, moved to the server.
    img = Image.open(io.BytesIO(data)).convert("L").resize((8, 8), Image.BOX)
    return (np.asarray(img, dtype=np.uint8).astype(np.float32) / 255.0).reshape(1, 8, 8)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        pixels = pb_utils.get_output_config_by_name(config, "PIXELS")
        self.dtype = pb_utils.triton_string_to_numpy(pixels["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            files = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            try:
                batch = np.stack([decode(f) for f in files]).astype(self.dtype)
            except Exception as e:  # a file PIL cannot read fails its request only
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"cannot decode the image: {e}")))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PIXELS", batch)]))
        return responses
'''

ENSEMBLE_CONFIG = f"""name: "digits_image"
platform: "ensemble"
max_batch_size: {MAX_BATCH}
input [ {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "SCORES" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" }} ]
ensemble_scheduling {{
  step [
    {{
      model_name: "digits_decode"
      model_version: -1
      input_map {{ key: "IMAGE" value: "IMAGE" }}
      output_map {{ key: "PIXELS" value: "pixels" }}
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


def build_python_models(out, force=False):
    """Writes digits_decode and digits_image under `out` (a pathlib.Path)."""
    out = pathlib.Path(out)
    dec, ens = out / "digits_decode", out / "digits_image"
    stamp = hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()
    stamps = [dec / ".build-stamp", ens / ".build-stamp"]
    if not force and all(s.exists() and s.read_text() == stamp for s in stamps):
        print("digits_image: up to date")
        return
    (dec / "1").mkdir(parents=True, exist_ok=True)
    (dec / "1" / "model.py").write_text(DECODE_MODEL)
    (dec / "config.pbtxt").write_text(DECODE_CONFIG)
    (ens / "1").mkdir(parents=True, exist_ok=True)  # an ensemble's version folder is empty
    (ens / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    (ens / "labels.txt").write_text("\n".join(LABELS) + "\n")
    for s in stamps:
        s.write_text(stamp)
    print("digits_image: written (digits_decode [python] -> digits)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="model repository folder holding `digits`")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args()
    build_python_models(pathlib.Path(args.out), args.force)


if __name__ == "__main__":
    main()
