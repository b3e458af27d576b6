"""examples/: the stylize models (TorchScript and ONNX) served and called by
examples/clients/stylize.py, through the real tritonclient and through its plain-HTTP
fallback, on an image whose size no training patch had."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from harness import ROOT, Server, free_port

sys.path.insert(0, str(ROOT / "examples"))
import build_repository  # noqa: E402
import stylize_model  # noqa: E402

CLIENT = ROOT / "examples" / "clients" / "stylize.py"
WIDTH, HEIGHT = 173, 97
TRITONCLIENT = os.environ.get("TRITON_CLIENT_PYTHONPATH")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("stylize_repo")
    build_repository.build_stylize(repo, force=False)
    with Server(repo, wait="ready") as s:
        yield s


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """china.jpg (never trained on) at an odd size, as a PNG."""
    from sklearn.datasets import load_sample_image

    path = tmp_path_factory.mktemp("stylize_in") / "photo.png"
    Image.fromarray(load_sample_image("china.jpg")).resize((WIDTH, HEIGHT), Image.LANCZOS).save(path)
    return path


def run_client(args, tritonclient):
    """tritonclient: True puts the real package on PYTHONPATH; False leaves it off, so the
    client falls back to requests."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if tritonclient:
        env["PYTHONPATH"] = TRITONCLIENT
    return subprocess.run(["/usr/bin/python3", str(CLIENT), "--verbose", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def target_style(path):
    import torch

    x = torch.from_numpy(pixels(path).transpose(2, 0, 1)[None].copy()).float()
    return stylize_model.reference_stylize(x)[0].numpy().transpose(1, 2, 0).astype(np.float64)


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / max(float(((a - b) ** 2).mean()), 1e-12))


def stylize(server, photo, out, model, tritonclient):
    r = run_client(["--image", str(photo), "--out", str(out), "-u", server.url, "--model", model],
                   tritonclient)
    assert r.returncode == 0, r.stderr
    ran = "tritonclient.http" if tritonclient else "requests (binary tensor extension)"
    assert f"client: {ran}" in r.stderr
    return pixels(out)


def check_styled(styled, photo):
    source, target = pixels(photo), target_style(photo)
    assert styled.shape == (HEIGHT, WIDTH, 3)
    # The style is applied: far closer to the target than the photo itself is.
    assert psnr(styled, target) > psnr(source, target) + 3, (psnr(styled, target), psnr(source, target))
    assert psnr(styled, source) < 20


@pytest.mark.parametrize("model", ["stylize", "stylize_onnx"])
def test_client_without_tritonclient_stylizes_at_the_input_size(server, photo, tmp_path, model):
    styled = stylize(server, photo, tmp_path / "out.png", model, tritonclient=False)
    check_styled(styled, photo)


def test_torchscript_and_onnx_give_the_same_picture(server, photo, tmp_path):
    a = stylize(server, photo, tmp_path / "ts.png", "stylize", tritonclient=False)
    b = stylize(server, photo, tmp_path / "onnx.png", "stylize_onnx", tritonclient=False)
    assert np.abs(a - b).max() <= 2


def test_jpeg_output_keeps_the_size(server, photo, tmp_path):
    out = tmp_path / "out.jpg"
    stylize(server, photo, out, "stylize", tritonclient=False)
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (WIDTH, HEIGHT)


def need_tritonclient():
    if not TRITONCLIENT:
        pytest.skip("TRITON_CLIENT_PYTHONPATH is not set: no tritonclient package to test with")


@pytest.mark.parametrize("model", ["stylize", "stylize_onnx"])
def test_client_through_tritonclient_matches_the_fallback(server, photo, tmp_path, model):
    need_tritonclient()
    styled = stylize(server, photo, tmp_path / "tc.png", model, tritonclient=True)
    check_styled(styled, photo)
    plain = stylize(server, photo, tmp_path / "plain.png", model, tritonclient=False)
    assert np.array_equal(styled, plain)


@pytest.mark.parametrize("tritonclient", [False, True])
def test_bad_image_path_is_a_clear_error(server, tmp_path, tritonclient):
    if tritonclient:
        need_tritonclient()
    missing = tmp_path / "missing.png"
    r = run_client(["--image", str(missing), "--out", str(tmp_path / "o.jpg"), "-u", server.url],
                   tritonclient)
    assert r.returncode != 0
    assert f"cannot read image {missing}" in r.stderr
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a picture")
    r = run_client(["--image", str(not_an_image), "--out", str(tmp_path / "o.jpg"), "-u", server.url],
                   tritonclient)
    assert r.returncode != 0 and f"cannot read image {not_an_image}" in r.stderr
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("tritonclient", [False, True])
def test_unreachable_server_is_a_clear_error(photo, tmp_path, tritonclient):
    if tritonclient:
        need_tritonclient()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = run_client(["--image", str(photo), "--out", str(tmp_path / "o.jpg"), "-u", url], tritonclient)
    assert r.returncode != 0
    assert f"cannot reach the server at {url}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("tritonclient", [False, True])
def test_unknown_model_names_the_model(server, photo, tmp_path, tritonclient):
    if tritonclient:
        need_tritonclient()
    r = run_client(["--image", str(photo), "--out", str(tmp_path / "o.jpg"), "-u", server.url,
                    "--model", "no_such_model"], tritonclient)
    assert r.returncode != 0
    assert "no_such_model" in r.stderr and "Traceback" not in r.stderr
