// /console/models/<name>: metadata, the config as the server completed it, statistics,
// and a playground: a picture for an image input, a JSON request for anything else.
import { call, refusalHint } from './api.js';
import { askForAccess } from './access.js';
import { h } from './dom.js';
import { imageSpec, imageScale, decodePixels, toTensor, toImageData } from './image.js';

function section(title, id, ...body) {
  return h('section', { class: 'card', id }, h('h2', {}, title), ...body);
}

function pre(obj) {
  return h('pre', { class: 'json' }, JSON.stringify(obj, null, 2));
}

function failure(r, what) {
  if (r.refused) {
    const hint = refusalHint(r);
    return h('p', { class: 'error' }, `${what} refused: ${r.error} (${hint.text})`);
  }
  return h('p', { class: 'error' }, `${what} failed: ${r.error}`);
}

// A valid JSON request for the config: zeros of each input's shape (batch 1, -1 as 1).
function sampleRequest(config) {
  const batch = Number(config.max_batch_size || 0) > 0;
  const inputs = (config.input || []).map((t) => {
    const dims = (t.dims || []).map((d) => (Number(d) < 0 ? 1 : Number(d)));
    const shape = batch ? [1, ...dims] : dims;
    const n = shape.reduce((a, b) => a * b, 1);
    const datatype = (t.data_type || 'TYPE_FP32').replace('TYPE_', '').replace('STRING', 'BYTES');
    const zero = datatype === 'BYTES' ? '' : datatype === 'BOOL' ? false : 0;
    return { name: t.name, shape, datatype, data: new Array(n).fill(zero) };
  });
  const outputs = (config.output || []).map((t) => ({ name: t.name }));
  return { inputs, outputs };
}

function isClassification(output) {
  const dims = (output?.dims || []).map(Number);
  return output && dims.length === 1 && dims[0] > 1 && output.data_type !== 'TYPE_STRING';
}

async function postInfer(name, headerJson, payload) {
  const header = new TextEncoder().encode(JSON.stringify(headerJson));
  const body = new Uint8Array(header.length + payload.byteLength);
  body.set(header, 0);
  body.set(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength), header.length);
  const start = performance.now();
  const r = await call('POST', `/v2/models/${encodeURIComponent(name)}/infer`, {
    body,
    headers: { 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': String(header.length) },
  });
  if (!r.ok || r.data) return { r, ms: performance.now() - start, header: r.data, bytes: null };
  // A binary answer: JSON header, then the tensors' bytes.
  const buf = new Uint8Array(await r.response.arrayBuffer());
  const ms = performance.now() - start;
  const hlen = Number(r.response.headers.get('Inference-Header-Content-Length') || buf.length);
  const meta = JSON.parse(new TextDecoder().decode(buf.subarray(0, hlen)));
  return { r, ms, header: meta, bytes: buf.subarray(hlen) };
}

function imagePlayground(name, config, spec, input) {
  const scale = imageScale(config.parameters, spec.fp32);
  const output = (config.output || [])[0];
  const outSpec = imageSpec(output, config.parameters);
  const imageOut = outSpec && outSpec.channels === 3;
  const classify = !imageOut && isClassification(output);
  const result = h('div', { id: 'playground-result' });
  const file = h('input', { type: 'file', accept: 'image/*', id: 'playground-file' });
  const batch = Number(config.max_batch_size || 0) > 0;
  file.addEventListener('change', async () => {
    if (!file.files.length) return;
    result.replaceChildren(h('p', {}, 'running…'));
    let tensor;
    try {
      tensor = toTensor(await decodePixels(file.files[0]), spec, scale);
    } catch (e) {
      result.replaceChildren(h('p', { class: 'error' }, `cannot read that image: ${e.message}`));
      return;
    }
    const shape = batch ? [1, ...tensor.shape] : tensor.shape;
    const outParams = classify ? { classification: Math.min(5, Number(output.dims[0])) } : { binary_data: true };
    const req = {
      inputs: [{ name: input.name, shape, datatype: spec.fp32 ? 'FP32' : 'UINT8', parameters: { binary_data_size: tensor.data.byteLength } }],
      outputs: output ? [{ name: output.name, parameters: outParams }] : [],
    };
    const { r, ms, header, bytes } = await postInfer(name, req, tensor.data);
    const latency = h('p', { class: 'latency', id: 'playground-latency' }, `latency ${ms.toFixed(1)} ms (input ${shape.join('×')} ${req.inputs[0].datatype})`);
    if (!r.ok) {
      if (r.refused) askForAccess(refusalHint(r).header);
      result.replaceChildren(failure(r, 'infer'), latency);
      return;
    }
    const out = header.outputs[0];
    if (classify) {
      const rows = (out.data || []).map((entry) => {
        const [score, index, label] = String(entry).split(':');
        return h('tr', { 'data-score': score }, h('td', { class: 'label' }, label || index), h('td', {}, index), h('td', {}, Number(score).toFixed(4)));
      });
      result.replaceChildren(h('table', { class: 'classes', id: 'playground-classes' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Label'), h('th', {}, 'Class'), h('th', {}, 'Score'))), h('tbody', {}, rows)), latency);
      return;
    }
    if (imageOut && bytes) {
      const size = Number(out.parameters?.binary_data_size || bytes.length);
      const copy = bytes.slice(0, size); // aligned for the typed array
      const values = out.datatype === 'FP32' ? new Float32Array(copy.buffer) : copy;
      const oshape = out.shape.slice(out.shape.length - 3).map(Number);
      const img = toImageData(values, oshape, outSpec, imageScale(config.parameters, out.datatype === 'FP32'));
      const canvas = h('canvas', { width: img.width, height: img.height });
      canvas.getContext('2d').putImageData(img, 0, 0);
      const blob = await new Promise((res) => canvas.toBlob(res, 'image/png'));
      const el = h('img', { id: 'playground-output', alt: `${name} output`, src: URL.createObjectURL(blob), class: 'output-image' });
      result.replaceChildren(h('div', { class: 'images' },
        h('figure', {}, h('img', { src: URL.createObjectURL(file.files[0]), alt: 'input', class: 'output-image' }), h('figcaption', {}, 'input')),
        h('figure', {}, el, h('figcaption', {}, `output ${img.width}×${img.height}`))), latency);
      return;
    }
    result.replaceChildren(pre(header), latency);
  });
  return [
    h('p', {}, `${input.name}: a picture, ${spec.channels === 1 ? 'grayscale' : 'RGB'} ${spec.layout}`,
      spec.height > 0 ? `, resized to ${spec.height}×${spec.width}` : ', at its own size', `, pixel values × ${+scale.toPrecision(6)}.`),
    h('label', {}, 'Image ', file),
    result,
  ];
}

function jsonPlayground(name, config) {
  const editor = h('textarea', { id: 'playground-json', rows: 14, spellcheck: 'false' }, JSON.stringify(sampleRequest(config), null, 2));
  const result = h('div', { id: 'playground-result' });
  const send = h('button', { type: 'button', id: 'playground-send', onclick: async () => {
    let body;
    try {
      body = JSON.parse(editor.value);
    } catch (e) {
      result.replaceChildren(h('p', { class: 'error' }, `not JSON: ${e.message}`));
      return;
    }
    const start = performance.now();
    const r = await call('POST', `/v2/models/${encodeURIComponent(name)}/infer`, { json: body });
    const latency = h('p', { class: 'latency', id: 'playground-latency' }, `latency ${(performance.now() - start).toFixed(1)} ms`);
    if (!r.ok && r.refused) askForAccess(refusalHint(r).header);
    result.replaceChildren(r.ok ? pre(r.data) : failure(r, 'infer'), latency);
  } }, 'Send');
  return [editor, h('div', {}, send), result];
}

export function renderModel(app, name) {
  document.getElementById('crumb').textContent = `Model ${name}`;
  async function refresh() {
    const base = `/v2/models/${encodeURIComponent(name)}`;
    const [meta, config, stats] = await Promise.all([call('GET', base), call('GET', `${base}/config`), call('GET', `${base}/stats`)]);
    const metaBody = meta.ok
      ? [h('dl', { class: 'facts' }, h('dt', {}, 'Platform'), h('dd', {}, meta.data.platform), h('dt', {}, 'Versions'), h('dd', {}, (meta.data.versions || []).join(', '))),
        h('table', { class: 'tensors' }, h('thead', {}, h('tr', {}, ['', 'Name', 'Datatype', 'Shape'].map((t) => h('th', {}, t)))),
          h('tbody', {}, [...(meta.data.inputs || []).map((t) => ['input', t]), ...(meta.data.outputs || []).map((t) => ['output', t])]
            .map(([k, t]) => h('tr', {}, h('td', {}, k), h('td', {}, t.name), h('td', {}, t.datatype), h('td', {}, `[${t.shape.join(', ')}]`)))))]
      : [failure(meta, 'metadata')];
    let playground;
    if (!config.ok) {
      playground = [failure(config, 'the config (needed to prepare a request)')];
    } else {
      const input = (config.data.input || [])[0];
      const spec = (config.data.input || []).length === 1 ? imageSpec(input, config.data.parameters) : null;
      playground = spec ? imagePlayground(name, config.data, spec, input) : jsonPlayground(name, config.data);
    }
    app.replaceChildren(
      h('p', {}, h('a', { href: '/console/' }, '← all models')),
      h('h1', { id: 'model-name' }, name),
      section('Playground', 'playground', ...playground),
      section('Metadata', 'metadata', ...metaBody),
      section('Config (as the server completed it)', 'config', config.ok ? pre(config.data) : failure(config, 'config')),
      section('Statistics', 'statistics', stats.ok ? pre(stats.data) : failure(stats, 'statistics')),
    );
  }
  refresh();
  return { refresh };
}
