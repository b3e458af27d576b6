#!/usr/bin/python3
"""Classifies a digit PNG with the `digits` model and prints the top 3 classes.

  /usr/bin/python3 examples/clients/classify.py examples/data/digit_3.png
  0.998:3:THREE
  ...

The image goes as raw tensor bytes (the binary tensor extension) and the server does the
top-k (the classification extension, class_count 3). --pipeline sends UINT8 pixels to the
digits_pipeline ensemble instead of scaled FP32 to digits. --raw sends the image file as
it is (one BYTES element) to the digits_image ensemble, whose Python model (digits_decode)
decodes and scales it on the server.
"""
import argparse
import json
import struct
import sys

import numpy as np
import requests
from PIL import Image


def load_pixels(path):
    """Any size grayscale/RGB PNG -> [1, 8, 8] UINT8, the digits' resolution."""
    img = Image.open(path).convert("L").resize((8, 8), Image.BOX)
    return np.asarray(img, dtype=np.uint8).reshape(1, 8, 8)


def parse_bytes_tensor(buf):
    items, pos = [], 0
    while pos < len(buf):
        (n,) = struct.unpack_from("<I", buf, pos)
        items.append(buf[pos + 4:pos + 4 + n].decode())
        pos += 4 + n
    return items


def infer(url, model, input_name, pixels, output_name, class_count):
    if isinstance(pixels, bytes):  # one BYTES element: 4-byte little-endian length + bytes
        datatype, shape = "BYTES", [1, 1]
        payload = struct.pack("<I", len(pixels)) + pixels
    else:
        datatype = {np.float32: "FP32", np.uint8: "UINT8"}[pixels.dtype.type]
        shape, payload = list(pixels.shape), pixels.tobytes()
    body_json = {
        "inputs": [{"name": input_name, "shape": shape, "datatype": datatype,
                    "parameters": {"binary_data_size": len(payload)}}],
        "outputs": [{"name": output_name,
                     "parameters": {"classification": class_count, "binary_data": True}}],
    }
    header = json.dumps(body_json).encode()
    r = requests.post(f"{url}/v2/models/{model}/infer", data=header + payload,
                      headers={"Inference-Header-Content-Length": str(len(header)),
                               "Content-Type": "application/octet-stream"}, timeout=30)
    if r.status_code != 200:
        sys.exit(f"error {r.status_code}: {r.text}")
    header_len = r.headers.get("Inference-Header-Content-Length")
    if header_len is None:  # the server answered in plain JSON
        return r.json()["outputs"][0]["data"]
    header_len = int(header_len)
    meta = json.loads(r.content[:header_len])
    out = meta["outputs"][0]
    if "data" in out:
        return out["data"]
    size = out["parameters"]["binary_data_size"]
    return parse_bytes_tensor(r.content[header_len:header_len + size])


def main():
    p = argparse.ArgumentParser(description="Top-3 classes of a digit image.")
    p.add_argument("image", help="PNG of a digit (e.g. examples/data/digit_3.png)")
    p.add_argument("--url", default="http://localhost:8000", help="server URL (default %(default)s)")
    p.add_argument("--pipeline", action="store_true",
                   help="send raw UINT8 pixels to the digits_pipeline ensemble, which scales "
                        "them on the server (digits_preprocess) before digits")
    p.add_argument("--raw", action="store_true",
                   help="send the image file as it is to the digits_image ensemble, which "
                        "decodes it on the server (digits_decode, a Python model)")
    args = p.parse_args()
    if "://" not in args.url:  # tritonclient-style "localhost:8000"
        args.url = "http://" + args.url
    if args.raw:
        with open(args.image, "rb") as f:
            result = infer(args.url, "digits_image", "IMAGE", f.read(), "SCORES", 3)
        for entry in result:
            print(entry)
        return
    pixels = load_pixels(args.image)
    if args.pipeline:
        result = infer(args.url, "digits_pipeline", "IMAGE", pixels, "SCORES", 3)
    else:
        # [1, 1, 8, 8] FP32 in [0, 1]: the layout and scale digits was trained on.
        scaled = (pixels.astype(np.float32) / 255.0).reshape(1, 1, 8, 8)
        result = infer(args.url, "digits", "INPUT__0", scaled, "OUTPUT__0", 3)
    for entry in result:
        print(entry)


if __name__ == "__main__":
    main()
