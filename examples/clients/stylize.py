#!/usr/bin/python3
"""Stylizes an image with the `stylize` model, as the OneFlow guide's fast_neural_style
infer.py does, and writes the result at the input's size.

  /usr/bin/python3 examples/clients/stylize.py --image examples/data/stylize_sample.png --out out.jpg

The image goes to the server as one [1, 3, H, W] FP32 tensor of 0..255 pixels in binary
form, and the output comes back binary too. With tritonclient installed it does so through
tritonclient.http; without it, through a plain HTTP request in the same binary tensor
format (--verbose says which one ran).
"""
import argparse
import json
import sys

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError

INPUT, OUTPUT = "INPUT__0", "OUTPUT__0"


def load_image(path):
    """Any image file -> [1, 3, H, W] FP32, 0..255 (the model's image_scale is 1)."""
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as e:
        sys.exit(f"error: cannot read image {path}: {e}")
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def infer_tritonclient(httpclient, url, model, pixels):
    from tritonclient.utils import InferenceServerException

    host = url.split("://", 1)[-1]
    try:
        client = httpclient.InferenceServerClient(url=host, ssl=url.startswith("https://"))
        inp = httpclient.InferInput(INPUT, list(pixels.shape), "FP32")
        inp.set_data_from_numpy(pixels, binary_data=True)
        out = httpclient.InferRequestedOutput(OUTPUT, binary_data=True)
        result = client.infer(model, inputs=[inp], outputs=[out])
        return result.as_numpy(OUTPUT)
    except InferenceServerException as e:
        sys.exit(f"error: {url}: {e}")
    except OSError as e:  # connection refused, unknown host
        sys.exit(f"error: cannot reach the server at {url}: {e}")


def infer_requests(url, model, pixels):
    """The binary tensor extension by hand: JSON header, then the raw tensor bytes."""
    payload = pixels.tobytes()
    header = json.dumps({
        "inputs": [{"name": INPUT, "shape": list(pixels.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(payload)}}],
        "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
    }).encode()
    try:
        r = requests.post(f"{url}/v2/models/{model}/infer", data=header + payload,
                          headers={"Inference-Header-Content-Length": str(len(header)),
                                   "Content-Type": "application/octet-stream"}, timeout=120)
    except requests.RequestException as e:
        sys.exit(f"error: cannot reach the server at {url}: {e}")
    if r.status_code != 200:
        sys.exit(f"error {r.status_code} from {url}: {r.text}")
    header_len = r.headers.get("Inference-Header-Content-Length")
    if header_len is None:  # plain JSON
        out = r.json()["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    header_len = int(header_len)
    out = json.loads(r.content[:header_len])["outputs"][0]
    if out["datatype"] != "FP32":
        sys.exit(f"error: {model} returned {out['datatype']}, expected FP32")
    size = out["parameters"]["binary_data_size"]
    data = np.frombuffer(r.content[header_len:header_len + size], dtype=np.float32)
    return data.reshape(out["shape"])


def import_tritonclient():
    try:
        import tritonclient.http as httpclient
        return httpclient
    except ImportError:
        return None


def main():
    p = argparse.ArgumentParser(description="Stylize an image with the stylize model.")
    p.add_argument("--image", required=True, help="input image (any format PIL reads)")
    p.add_argument("--out", required=True, help="output image, e.g. out.jpg")
    p.add_argument("-u", "--url", default="localhost:8000", help="server (default %(default)s)")
    p.add_argument("--model", default="stylize", help="model name (default %(default)s; "
                   "stylize_onnx is the same network on ONNX Runtime)")
    p.add_argument("--no-tritonclient", action="store_true",
                   help="use the plain HTTP request even when tritonclient is installed")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    url = args.url if "://" in args.url else "http://" + args.url
    pixels = load_image(args.image)
    httpclient = None if args.no_tritonclient else import_tritonclient()
    if args.verbose:
        print(f"client: {'tritonclient.http' if httpclient else 'requests (binary tensor extension)'}",
              file=sys.stderr)
    if httpclient:
        styled = infer_tritonclient(httpclient, url, args.model, pixels)
    else:
        styled = infer_requests(url, args.model, pixels)
    if styled.shape != pixels.shape:
        sys.exit(f"error: {args.model} returned shape {list(styled.shape)}, "
                 f"expected {list(pixels.shape)}")
    rgb = np.clip(np.rint(styled[0].transpose(1, 2, 0)), 0, 255).astype(np.uint8)
    try:
        Image.fromarray(rgb).save(args.out)
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot write {args.out}: {e}")
    if args.verbose:
        print(f"wrote {args.out} ({rgb.shape[1]}x{rgb.shape[0]})", file=sys.stderr)


if __name__ == "__main__":
    main()
