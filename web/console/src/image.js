// The image convention (docs/console.md): how a picture becomes an input tensor and an
// output tensor a picture, with the arithmetic of the example clients (PIL): grayscale as
// PIL's convert("L"), resizing as PIL's BOX filter on 8-bit pixels, then the scale.

// An input or output of the config that takes a picture: {layout, channels, height, width}
// (height/width -1 keep the picture's size), or null.
export function imageSpec(tensor, parameters) {
  if (!tensor || !['TYPE_FP32', 'TYPE_UINT8'].includes(tensor.data_type)) return null;
  const dims = (tensor.dims || []).map(Number);
  if (dims.length !== 3) return null;
  let layout = param(parameters, 'image_layout');
  if (layout !== 'CHW' && layout !== 'HWC') layout = dims[0] === 1 || dims[0] === 3 ? 'CHW' : 'HWC';
  const [channels, height, width] = layout === 'CHW' ? dims : [dims[2], dims[0], dims[1]];
  if (channels !== 1 && channels !== 3) return null;
  return { layout, channels, height, width, fp32: tensor.data_type === 'TYPE_FP32' };
}

export function param(parameters, key) {
  const v = parameters && parameters[key];
  return v && typeof v.string_value === 'string' ? v.string_value : null;
}

export function imageScale(parameters, fp32) {
  const s = Number(param(parameters, 'image_scale'));
  if (param(parameters, 'image_scale') !== null && Number.isFinite(s) && s > 0) return s;
  return fp32 ? 1 / 255 : 1;
}

// The file's pixels at full resolution, RGBA, exactly as stored (no colour management).
export async function decodePixels(file) {
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

// RGBA -> planes of 8-bit values (1 plane: PIL's "L" = (19595 R + 38470 G + 7471 B) >> 16, rounded).
function planes(img, channels) {
  const n = img.width * img.height;
  const d = img.data;
  if (channels === 1) {
    const l = new Uint8Array(n);
    for (let i = 0; i < n; i++) l[i] = (d[4 * i] * 19595 + d[4 * i + 1] * 38470 + d[4 * i + 2] * 7471 + 0x8000) >>> 16;
    return [l];
  }
  const out = [new Uint8Array(n), new Uint8Array(n), new Uint8Array(n)];
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c][i] = d[4 * i + c];
  return out;
}

// PIL's resampling coefficients for the BOX filter (support 0.5), in its fixed point.
const PRECISION_BITS = 32 - 8 - 2;
function boxCoefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 0.5 * filterscale;
  const rows = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w = [];
    let total = 0;
    for (let x = 0; x < xmax - xmin; x++) {
      const t = (x + xmin - center + 0.5) * ss;
      const v = t > -0.5 && t <= 0.5 ? 1 : 0;
      w.push(v);
      total += v;
    }
    const k = w.map((v) => {
      const f = total ? v / total : 0;
      return Math.trunc(f < 0 ? f * (1 << PRECISION_BITS) - 0.5 : f * (1 << PRECISION_BITS) + 0.5);
    });
    rows.push({ xmin, k });
  }
  return rows;
}

function clip8(acc) {
  const v = Math.floor(acc / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One plane resized as PIL does: horizontal pass, then vertical, each rounded to 8 bits.
function resizePlane(src, w, h, ow, oh) {
  let cur = src;
  let cw = w;
  if (ow !== w) {
    const co = boxCoefficients(w, ow);
    const out = new Uint8Array(ow * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < ow; x++) {
        let acc = 1 << (PRECISION_BITS - 1);
        const { xmin, k } = co[x];
        for (let i = 0; i < k.length; i++) acc += cur[y * cw + xmin + i] * k[i];
        out[y * ow + x] = clip8(acc);
      }
    }
    cur = out;
    cw = ow;
  }
  if (oh !== h) {
    const co = boxCoefficients(h, oh);
    const out = new Uint8Array(cw * oh);
    for (let y = 0; y < oh; y++) {
      const { xmin, k } = co[y];
      for (let x = 0; x < cw; x++) {
        let acc = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < k.length; i++) acc += cur[(xmin + i) * cw + x] * k[i];
        out[y * cw + x] = clip8(acc);
      }
    }
    cur = out;
  }
  return cur;
}

// The picture as the input tensor's bytes and shape (without the batch dimension).
export function toTensor(img, spec, scale) {
  const oh = spec.height > 0 ? spec.height : img.height;
  const ow = spec.width > 0 ? spec.width : img.width;
  const ps = planes(img, spec.channels).map((p) => resizePlane(p, img.width, img.height, ow, oh));
  const n = ow * oh;
  const C = spec.channels;
  const out = spec.fp32 ? new Float32Array(C * n) : new Uint8Array(C * n);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < n; i++) {
      const v = spec.fp32 ? ps[c][i] * scale : Math.min(255, Math.round(ps[c][i] * scale));
      out[spec.layout === 'CHW' ? c * n + i : i * C + c] = v;
    }
  }
  const shape = spec.layout === 'CHW' ? [C, oh, ow] : [oh, ow, C];
  return { data: out, shape };
}

// An output tensor back to a picture: divided by the scale, clamped to 0..255.
export function toImageData(values, shape, spec, scale) {
  const [C, H, W] = spec.layout === 'CHW' ? shape : [shape[2], shape[0], shape[1]];
  const img = new ImageData(W, H);
  const n = W * H;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const src = C === 1 ? 0 : c;
      const v = values[spec.layout === 'CHW' ? src * n + i : i * C + src] / scale;
      img.data[4 * i + c] = Math.max(0, Math.min(255, Math.round(v)));
    }
    img.data[4 * i + 3] = 255;
  }
  return img;
}
