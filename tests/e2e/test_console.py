"""The web console (/console/) end to end.

Browser tests: Debian's Chromium (/usr/bin/chromium, scripts/install-deps.sh) driven by the
npm package playwright-core (tests/browser, installed into the build tree by CMake; never a
downloaded browser), headless, through tests/browser/console_check.cjs. Each run records
every request the page made, its console errors and page errors; a screenshot of each page
is kept in build/test-artifacts/console/.

Serving tests: content types, caching headers, the Content-Security-Policy, paths that try
to leave the asset set, and --allow-console=false.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from harness import BIN, ROOT, Server, identity_config, write_model

BUILD = pathlib.Path(BIN).resolve().parent
ARTIFACTS = BUILD / "test-artifacts" / "console"
DRIVER = ROOT / "tests" / "browser" / "console_check.cjs"
PLAYWRIGHT = BUILD / "browser-tests" / "node_modules" / "playwright-core"
CHROMIUM = "/usr/bin/chromium"
IDENTITY_INFER = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2],
                                         "data": [1, 2]}]})

STYLIZE_CONFIG = """name: "stylize"
backend: "pytorch"
max_batch_size: 1
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] } ]
parameters { key: "image_scale" value: { string_value: "1" } }
"""


class SwapChannels(torch.nn.Module):
    """Stand-in for the example `stylize`: a fixed 1x1 convolution, RGB -> BGR."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).flip(0).reshape(3, 3, 1, 1))

    def forward(self, x):
        return self.conv(x)


def browse(server, scenario, **args):
    """Runs one scenario; returns what the page showed, after the checks every page passes."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/install-deps.sh"
    assert PLAYWRIGHT.is_dir(), f"{PLAYWRIGHT} is missing: build first (cmake installs it)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cmd = ["node", str(DRIVER), server.url, str(ARTIFACTS), scenario,
           *(f"{k}={v}" for k, v in args.items())]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                       env={**os.environ, "PLAYWRIGHT_CORE": str(PLAYWRIGHT), "CHROMIUM": CHROMIUM})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert "failure" not in out, out["failure"] + "\n" + server.log()[-3000:]
    origin = urllib.parse.urlsplit(server.url)
    for url in out["requests"]:
        u = urllib.parse.urlsplit(url)
        assert u.scheme in ("blob", "data") or (u.scheme, u.netloc) == (origin.scheme, origin.netloc), url
    assert out["page_errors"] == []
    return out


def console_errors_other_than_refusals(out):
    return [e for e in out["console_errors"] if not re.search(r"status of 40[13]", e)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """identity, the example's digits (trained as `make models` does), a stand-in stylize,
    and a model whose load fails."""
    root = tmp_path_factory.mktemp("console")
    sys.path.insert(0, str(ROOT / "examples"))
    import build_repository as examples

    examples.build_digits(root, force=False)
    examples.write_digit_pngs()
    write_model(root, "identity", identity_config("identity"))
    stylize = write_model(root, "stylize", STYLIZE_CONFIG)
    torch.jit.save(torch.jit.script(SwapChannels()), str(stylize / "1" / "model.pt"))
    write_model(root, "broken", 'name: "broken"\nbackend: "pytorch"\nmax_batch_size: 0\n'
                'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
                'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n')
    return root


@pytest.fixture(scope="module")
def explicit_server(repo):
    with Server(repo, ["--model-control-mode=explicit", "--load-model=*",
                         "--exit-on-error=false"], wait="live") as s:
        yield s


def classify_like_the_example(server, image_path):
    """examples/clients/classify.py's pre-processing and call: the scores it would print."""
    sys.path.insert(0, str(ROOT / "examples" / "clients"))
    import classify

    pixels = classify.load_pixels(image_path)
    scaled = (pixels.astype(np.float32) / 255.0).reshape(1, 1, 8, 8)
    return classify.infer(server.url, "digits", "INPUT__0", scaled, "OUTPUT__0", 3)


def test_overview_lists_models_and_unload_then_load_change_the_server(explicit_server):
    out = browse(explicit_server, "overview", model="identity", infer_body=IDENTITY_INFER)
    assert console_errors_other_than_refusals(out) == [] and out["console_errors"] == []
    rows = {m["name"]: m for m in out["models"]}
    assert set(rows) == {"identity", "digits", "stylize", "broken"}
    assert "READY" in rows["digits"]["states"]
    assert "UNAVAILABLE" in rows["broken"]["states"]
    assert "model.pt" in rows["broken"]["reason"]  # the failed load's error
    for m in rows.values():
        assert [b["label"] for b in m["buttons"]] == ["Load", "Unload"]
        assert not any(b["disabled"] for b in m["buttons"])
    assert out["facts"]["Version"] and out["facts"]["Model control mode"] == "explicit"
    assert re.fullmatch(r"(\d+[dhm] )*\d+s", out["facts"]["Uptime"])
    assert "binary_tensor_data" in out["facts"]["Extensions"]
    assert (out["ready_before"], out["ready_after_unload"], out["ready_after_load"]) == \
        (True, False, True)
    assert out["charts"] == 4
    assert out["chart_titles"] == ["Requests / s", "p50 latency (ms)", "p99 latency (ms)",
                                   "Mean queue time (ms)"]
    assert {"identity", "digits"} <= set(out["chart_series"])


def test_digits_playground_matches_the_example_client(explicit_server):
    image = ROOT / "examples" / "data" / "digit_3.png"
    out = browse(explicit_server, "playground", model="digits", image=image)
    assert out["console_errors"] == [] and out["error"] == ""
    want = classify_like_the_example(explicit_server, image)
    assert want[0].split(":")[2] == "THREE"
    assert out["classes"][0] == "THREE"
    assert out["classes"][:3] == [w.split(":")[2] for w in want]
    # the same tensor as the example client's, so the same scores
    np.testing.assert_allclose(out["scores"][:3], [float(w.split(":")[0]) for w in want],
                               rtol=1e-5)
    assert out["sections"] == ["Playground", "Metadata", "Config (as the server completed it)",
                               "Statistics"]
    assert re.match(r"latency \d+\.\d ms", out["latency"])


def test_digits_playground_resizes_like_pil_box_at_any_size(explicit_server, tmp_path):
    """An RGB picture whose size is no multiple of 8: grayscale and BOX resize as PIL."""
    src = Image.open(ROOT / "examples" / "data" / "digit_3.png").convert("RGB")
    rgb = np.asarray(src.resize((45, 39), Image.BICUBIC)).astype(np.int32)
    rgb[..., 0] = np.clip(rgb[..., 0] + 40, 0, 255)  # tinted: the grayscale weights matter
    path = tmp_path / "odd.png"
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)
    out = browse(explicit_server, "playground", model="digits", image=path)
    want = classify_like_the_example(explicit_server, path)
    assert out["classes"][:3] == [w.split(":")[2] for w in want]
    np.testing.assert_allclose(out["scores"][:3], [float(w.split(":")[0]) for w in want],
                               rtol=1e-5)


def test_stylize_playground_shows_the_output_image(explicit_server, tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(23, 37, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels, "RGB").save(path)
    out = browse(explicit_server, "playground", model="stylize", image=path)
    assert out["console_errors"] == [] and out["error"] == ""
    assert len(out["output"]) == 1
    img = out["output"][0]
    assert (img["width"], img["height"]) == (37, 23)  # -1 dims: the picture's own size
    got = np.array(img["pixels"], dtype=np.uint8).reshape(23, 37, 4)
    np.testing.assert_array_equal(got[..., :3], pixels[..., ::-1])  # the stand-in swaps R, B
    assert (got[..., 3] == 255).all()


def test_json_playground_for_other_inputs(explicit_server):
    out = browse(explicit_server, "json", model="identity")
    assert out["console_errors"] == []
    request = json.loads(out["prefilled"])
    assert request["inputs"][0]["name"] == "INPUT0" and request["inputs"][0]["shape"] == [1]
    assert json.loads(out["response"])["outputs"][0]["name"] == "OUTPUT0"


def test_restricted_api_refuses_an_unload_without_the_key(repo):
    args = ["--model-control-mode=explicit", "--load-model=identity",
            "--http-restricted-api=model-repository:console-key=s3cret"]
    with Server(repo, args, wait="live") as s:
        out = browse(s, "restricted", model="identity", key="s3cret")
        assert console_errors_other_than_refusals(out) == []
        assert "repository index is refused" in out["note"]
        assert out["models"] == ["identity"]  # what the statistics endpoint lists
        assert "refused" in out["refusal"] and "console-key" in out["refusal"]
        assert out["access_open"] and out["header_prefilled"] == "console-key"
        assert out["ready_after_refused_unload"] is True
        assert out["ready_after_unload_with_key"] is False
        r = requests.post(f"{s.url}/v2/repository/models/identity/unload")
        assert r.status_code == 403  # and the key is still needed outside the console


def test_token_file_the_console_asks_for_the_token_then_works(repo, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("t0ken-for-console\n")
    args = ["--model-control-mode=explicit", "--load-model=identity",
            f"--auth-token-file={tokens}"]
    with Server(repo, args, wait="live") as s:
        assert requests.get(f"{s.url}/v2/models/identity/ready").status_code == 200
        out = browse(s, "token", model="identity", token="t0ken-for-console")
        assert console_errors_other_than_refusals(out) == []
        assert "bearer token" in out["note"] and out["access_open"]
        assert "identity" in out["models"] and "digits" in out["models"]  # the whole index
        assert requests.get(f"{s.url}/v2/models/identity/ready").status_code != 200


def test_buttons_say_why_they_are_disabled_outside_explicit_mode(repo, tmp_path):
    write_model(tmp_path, "identity", identity_config("identity"))
    with Server(tmp_path, ["--model-control-mode=none"], wait="ready") as s:
        out = browse(s, "disabled")
        assert out["console_errors"] == []
        assert [b["label"] for b in out["buttons"]] == ["Load", "Unload"]
        assert all(b["disabled"] for b in out["buttons"])
        assert "--model-control-mode=explicit" in out["why"] and "'none'" in out["why"]


# --- serving: types, caching, policy, escapes -------------------------------------------

@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("empty")) as s:
        yield s


def test_every_asset_has_its_type_caching_and_policy(plain_server):
    url = plain_server.url
    index = requests.get(f"{url}/console/")
    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.headers["Cache-Control"] == "no-cache"
    csp = index.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["connect-src"] == "'self'"
    for d in directives.values():  # no other host, no inline code
        assert "http" not in d and "*" not in d and "unsafe" not in d
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    assets = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', index.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for a in assets:
        r = requests.get(url + a)
        assert r.status_code == 200, a
        assert r.headers["Content-Type"] == types[pathlib.Path(a).suffix], a
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", a
        assert r.headers["Content-Security-Policy"] == csp
        assert re.search(r"-[A-Za-z0-9_-]{8}\.", a), f"{a}: not a hashed name"
        # and the page names nothing outside this origin
        assert not re.search(r"""["'(]https?://""", r.text) or a.endswith(".js"), a
    model_page = requests.get(f"{url}/console/models/digits")
    assert model_page.status_code == 200 and model_page.text == index.text
    assert model_page.headers["Cache-Control"] == "no-cache"
    facts = requests.get(f"{url}/console/facts.json")
    assert facts.headers["Content-Type"] == "application/json"
    assert facts.json()["model_control_mode"] == "none"
    redirect = requests.get(f"{url}/console", allow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["Location"] == "/console/"
    head = requests.head(f"{url}/console/")
    assert head.status_code == 200 and head.content == b""
    assert requests.post(f"{url}/console/").status_code == 405


@pytest.mark.parametrize("path", [
    "/console/..", "/console/../v2", "/console/assets/../index.html", "/console/%2e%2e/",
    "/console/%2E%2E/%2E%2E/etc/passwd", "/console/assets/%2e%2e/index.html",
    "/console/models/..", "/console/models/%2e%2e", "/console/models/a/b",
    "/console/models/a%2fb", "/console/models/", "/console//etc/passwd",
    "/console/etc/passwd", "/console/assets/", "/console/index.html/", "/console/nope.js",
    "/console/INDEX.HTML", "/console/assets/index.js", "/console/%00", "/console/models/%zz",
])
def test_paths_cannot_escape_the_asset_set(plain_server, path):
    # --path-as-is: the client must not normalize the dots away before they reach the server
    p = subprocess.run(["curl", "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                        plain_server.url + path], capture_output=True, text=True, timeout=10)
    assert p.stdout == "404", (path, p.stdout)


def test_console_off_is_404(tmp_path):
    with Server(tmp_path, ["--allow-console=false"]) as s:
        for path in ("/console/", "/console/facts.json", "/console/models/x"):
            assert requests.get(s.url + path).status_code == 404, path
        assert requests.get(f"{s.url}/v2/health/live").status_code == 200


def test_statistics_carry_the_latency_histograms_the_charts_read(tmp_path):
    """p50/p99 on the charts come from `latency_histograms` in the statistics JSON: the
    buckets /metrics exports, cumulative, the last (+Inf) equal to the success count."""
    write_model(tmp_path, "identity", identity_config("identity"))
    body = json.loads(IDENTITY_INFER)
    with Server(tmp_path, wait="ready") as s:
        for _ in range(7):
            assert requests.post(f"{s.url}/v2/models/identity/infer", json=body).status_code == 200
        st = requests.get(f"{s.url}/v2/models/identity/stats").json()["model_stats"][0]
        hist = st["latency_histograms"]
        assert "request" in hist  # on by default, as Triton's; queue/compute_infer when configured
        assert set(hist) <= {"request", "queue", "compute_infer"}
        for h in hist.values():
            assert len(h["cumulative"]) == len(h["bounds_ms"]) + 1
            assert h["cumulative"] == sorted(h["cumulative"])
        assert hist["request"]["cumulative"][-1] == st["inference_stats"]["success"]["count"] == 7
        metrics = requests.get(f"{s.metrics_url}/metrics").text
        bounds = re.findall(r'nv_inference_first_response_histogram_ms_bucket\{[^}]*le="([^"+]+)"',
                            metrics)
        assert [float(b) for b in bounds] == hist["request"]["bounds_ms"]
    with Server(tmp_path, ["--allow-metrics=false"], wait="ready") as s:
        st = requests.get(f"{s.url}/v2/models/identity/stats").json()["model_stats"][0]
        assert st["latency_histograms"] == {}  # no metrics, no buckets: the charts say so
