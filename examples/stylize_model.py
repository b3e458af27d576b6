"""The `stylize` example: a small fully convolutional network trained here, with no download,
to reproduce a fixed poster style (a soft colour-palette mapping plus dark edge inking).

The style is `reference_stylize`, written out in torch so the tests can compare the served
network against it. The network learns it from generated pictures (gradients, shaded
shapes, bars, noise) plus crops of scikit-learn's bundled flower photo; china.jpg, the other
bundled photo, is left out of training and becomes examples/data/stylize_sample.png.

Tensors are [3, H, W] FP32 with values 0..255, as fast_neural_style's are.
"""
import pathlib
import time
import warnings

SEED = 0
TRAIN_STEPS = 400
TRAIN_SECONDS_CAP = 45  # the issue allows a minute on two cores; stop early on a busy machine
PATCH = 40
BATCH = 16

# Pixel 0..255 times image_scale is the model input (the console's convention).
STYLIZE_CONFIG = """name: "{name}"
backend: "{backend}"
max_batch_size: 1
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "image_scale" value: {{ string_value: "1" }} }}
"""

# Indigo, teal, sage, mustard, coral, crimson, cream, plum: each pixel moves to (a soft
# mix of) its nearest palette colours.
PALETTE_RGB = [(38, 50, 80), (42, 110, 140), (110, 170, 120), (240, 200, 90),
               (235, 120, 70), (200, 70, 80), (250, 240, 215), (130, 95, 150)]
INK_RGB = (25, 20, 35)
PALETTE_SOFTNESS = 0.03  # squared RGB distance (0..1 scale) of the softmax over colours
INK_THRESHOLD, INK_WIDTH = 0.35, 0.06  # Sobel magnitude where ink reaches half strength


def reference_stylize(x):
    """The target style. x: [N, 3, H, W] torch tensor, 0..255. Returns the same shape."""
    import torch
    import torch.nn.functional as F

    x = x / 255.0
    palette = torch.tensor(PALETTE_RGB, dtype=torch.float32) / 255.0
    ink_colour = torch.tensor(INK_RGB, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :]) / 16
    blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
    dist = ((blur[:, None] - palette[None, :, :, None, None]) ** 2).sum(2)  # [N, P, H, W]
    weights = torch.softmax(-dist / PALETTE_SOFTNESS, dim=1)
    colour = (weights[:, :, None] * palette[None, :, :, None, None]).sum(1)
    lum = (blur * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    padded = F.pad(lum, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel[None, None])
    gy = F.conv2d(padded, sobel.t()[None, None])
    ink = torch.sigmoid((torch.sqrt(gx * gx + gy * gy + 1e-6) - INK_THRESHOLD) / INK_WIDTH)
    return (colour * (1 - ink) + ink_colour * ink) * 255.0


def generated_pictures(n, size, g):
    """n random [3, size, size] pictures in 0..1: a linear gradient, shaded or flat discs,
    boxes and bars, varied saturation and sensor-like noise."""
    import torch

    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    xs, ys = xs.expand(n, 1, size, size), ys.expand(n, 1, size, size)

    def rand(*shape):
        return torch.rand(n, *shape, generator=g)

    angle = rand(1, 1, 1) * 6.2832
    t = xs * torch.cos(angle) + ys * torch.sin(angle)
    lo, hi = t.amin((2, 3), keepdim=True), t.amax((2, 3), keepdim=True)
    t = (t - lo) / (hi - lo + 1e-6)
    img = rand(3, 1, 1) * (1 - t) + rand(3, 1, 1) * t
    for _ in range(6):
        colour, cx, cy = rand(3, 1, 1), rand(1, 1, 1), rand(1, 1, 1)
        r = 0.05 + 0.35 * rand(1, 1, 1)
        dx, dy = xs - cx, ys - cy
        radial = torch.sqrt(dx * dx + dy * dy)
        theta = rand(1, 1, 1) * 3.1416
        kind = torch.randint(0, 4, (n, 1, 1, 1), generator=g)
        mask = torch.where(kind == 0, radial < r,
               torch.where(kind == 1, (dx.abs() < r) & (dy.abs() < r * (0.2 + 1.3 * rand(1, 1, 1))),
               torch.where(kind == 2, (dx * torch.cos(theta) + dy * torch.sin(theta)).abs() < 0.3 * r,
                           torch.zeros_like(radial, dtype=torch.bool))))
        shade = torch.where(rand(1, 1, 1) < 0.5, 1.0 - 0.5 * (radial / r).clamp(0, 1), torch.ones(1))
        img = torch.where(mask, colour * shade, img)
    grey = img.mean(1, keepdim=True)
    img = grey + (img - grey) * (0.3 + 0.9 * rand(1, 1, 1))
    img = img + torch.randn(n, 3, size, size, generator=g) * 0.06 * rand(1, 1, 1)
    return img.clamp(0, 1)


def photo_crops(photo, n, size, g):
    """n random size x size crops (randomly flipped) of a [3, H, W] 0..1 photo."""
    import torch

    _, h, w = photo.shape
    crops = []
    for _ in range(n):
        y = int(torch.randint(0, h - size + 1, (1,), generator=g))
        x = int(torch.randint(0, w - size + 1, (1,), generator=g))
        c = photo[:, y:y + size, x:x + size]
        crops.append(c.flip(2) if torch.rand(1, generator=g) < 0.5 else c)
    return torch.stack(crops)


def stylize_net():
    import torch
    from torch import nn

    class StylizeNet(nn.Module):
        """[N, 3, H, W] 0..255 -> same shape: 3x3 convolutions see the 5x5 neighbourhood the
        style's blur and edge filter read; 1x1 layers do the palette mapping."""

        def __init__(self, c=20):
            super().__init__()
            pad = dict(padding=1, padding_mode="replicate")
            self.body = nn.Sequential(
                nn.Conv2d(3, c, 3, **pad), nn.ReLU(),
                nn.Conv2d(c, c, 3, **pad), nn.ReLU(),
                nn.Conv2d(c, c, 3, **pad), nn.ReLU(),
                nn.Conv2d(c, c, 1), nn.ReLU(),
                nn.Conv2d(c, 3, 1))

        def forward(self, x):
            return (self.body(x / 255.0) * 255.0).clamp(0.0, 255.0)

    return StylizeNet()


def load_photo(name):
    """One of scikit-learn's bundled sample photos as a [3, H, W] 0..255 float tensor."""
    import torch
    from sklearn.datasets import load_sample_image

    return torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1).float()


def train(log):
    """Returns the trained network and the seconds training took."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # a busy machine: a second thread mostly waits
    g = torch.Generator().manual_seed(SEED)
    start = time.time()
    flower = load_photo("flower.jpg") / 255.0
    net = stylize_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=6e-3, total_steps=TRAIN_STEPS)
    step = 0
    for step in range(TRAIN_STEPS):
        x = torch.cat([generated_pictures(BATCH * 3 // 4, PATCH, g),
                       photo_crops(flower, BATCH // 4, PATCH, g)]) * 255.0
        with torch.no_grad():
            y = reference_stylize(x)
        loss = F.mse_loss(net.body(x / 255.0), y / 255.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if time.time() - start > TRAIN_SECONDS_CAP:
            log(f"stylize: stopped at step {step + 1} of {TRAIN_STEPS} (time cap)")
            break
    return net.eval(), time.time() - start, step + 1


def psnr(a, b):
    import math

    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


def own_hash():
    """Part of the stamp: editing this file rebuilds the models as editing the builder does."""
    import hashlib

    return hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()


def build_stylize(out, force, stamp_of, up_to_date, write_stamp):
    import torch

    model_dir = out / "stylize"
    stamp = stamp_of("stylize" + own_hash())
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "1/model.pt"]):
        print("stylize: up to date")
        return
    net, seconds, steps = train(print)
    china = load_photo("china.jpg")[None]
    with torch.no_grad():
        quality = psnr(net(china), reference_stylize(china))
        unstyled = psnr(china, reference_stylize(china))
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(1, 3, 40, 56) * 255)
    torch.jit.save(traced, str(model_dir / "1" / "model.pt"))
    (model_dir / "config.pbtxt").write_text(STYLIZE_CONFIG.format(name="stylize", backend="pytorch"))
    write_stamp(model_dir, stamp)
    print(f"stylize: trained in {seconds:.1f}s ({steps} steps); on the held-out china.jpg "
          f"PSNR to the target style {quality:.1f} dB (the unstyled photo: {unstyled:.1f} dB)")


def build_stylize_onnx(out, force, stamp_of, up_to_date, write_stamp):
    import torch

    model_dir = out / "stylize_onnx"
    stamp = stamp_of("stylize_onnx" + (out / "stylize" / ".build-stamp").read_text())
    if not force and up_to_date(model_dir, stamp, ["config.pbtxt", "1/model.onnx"]):
        print("stylize_onnx: up to date")
        return
    module = torch.jit.load(str(out / "stylize" / "1" / "model.pt")).eval()
    onnx_path = model_dir / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".tmp")
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="no signature found")
        # Replicate padding exports as Slice ops that torch cannot constant-fold: harmless.
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(module, torch.rand(1, 3, 40, 56) * 255, str(tmp),
                          input_names=["INPUT__0"], output_names=["OUTPUT__0"], opset_version=13,
                          dynamic_axes={"INPUT__0": axes, "OUTPUT__0": axes})
    tmp.replace(onnx_path)
    (model_dir / "config.pbtxt").write_text(
        STYLIZE_CONFIG.format(name="stylize_onnx", backend="onnxruntime"))
    write_stamp(model_dir, stamp)
    print("stylize_onnx: exported from stylize/1/model.pt")


def write_sample(data_dir):
    """examples/data/stylize_sample.png: china.jpg (not trained on) at 320x213."""
    path = pathlib.Path(data_dir) / "stylize_sample.png"
    if path.exists():
        return
    from PIL import Image
    from sklearn.datasets import load_sample_image

    path.parent.mkdir(exist_ok=True)
    Image.fromarray(load_sample_image("china.jpg")).resize((320, 213), Image.LANCZOS).save(path)
