// Drives Debian's Chromium (playwright-core, never a downloaded browser) through the web
// console for tests/e2e/test_console.py, and prints what it saw as one JSON object:
//   node console_check.cjs <server url> <screenshot dir> <scenario> [name=value ...]
// Every request the page makes, console error and page error is recorded, so the test can
// tell that nothing left the server's host and that the page ran clean.
const path = require('node:path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

const [base, shots, scenario, ...rest] = process.argv.slice(2);
const args = Object.fromEntries(rest.map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
const TIMEOUT = 20000;

async function ready(model) {
  const r = await fetch(`${base}/v2/models/${model}/ready`);
  return r.status === 200;
}

const scenarios = {
  // The overview lists the models; Unload, then Load, change the model's state on the server.
  async overview(page, out) {
    await page.goto(`${base}/console/`);
    await page.waitForSelector('table.models tbody tr');
    await page.waitForSelector('[data-fact="Uptime"]');
    out.models = await page.$$eval('table.models tbody tr', (rows) => rows.map((r) => ({
      name: r.dataset.model,
      states: r.querySelector('.states').innerText,
      reason: r.querySelector('.reasons').innerText,
      buttons: [...r.querySelectorAll('button')].map((b) => ({ label: b.innerText, disabled: b.disabled })),
    })));
    out.facts = await page.$$eval('dl.facts dd', (dd) => Object.fromEntries(dd.map((d) => [d.dataset.fact, d.innerText])));
    const model = args.model;
    out.ready_before = await ready(model);
    await page.click(`tr[data-model="${model}"] button[data-action="unload"]`);
    await page.waitForFunction((m) => document.getElementById('action-status').innerText === `${m}: unloaded`, model, { timeout: TIMEOUT });
    out.ready_after_unload = await ready(model);
    await page.waitForFunction((m) => document.querySelector(`tr[data-model="${m}"] .states`).innerText.includes('UNAVAILABLE'), model);
    await page.click(`tr[data-model="${model}"] button[data-action="load"]`);
    await page.waitForFunction((m) => document.getElementById('action-status').innerText === `${m}: loaded`, model, { timeout: TIMEOUT });
    out.ready_after_load = await ready(model);
    // Traffic for the charts: a few polls with requests in between.
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 5; j++) {
        await fetch(`${base}/v2/models/${model}/infer`, { method: 'POST', body: args.infer_body });
      }
      await page.waitForTimeout(2100);
    }
    out.charts = await page.$$eval('.uplot', (c) => c.length);
    out.chart_titles = await page.$$eval('.uplot .u-title', (t) => t.map((x) => x.innerText));
    out.chart_series = await page.$$eval('[data-chart="rate"] .u-legend .u-series .u-label', (l) => l.map((x) => x.innerText));
    await page.screenshot({ path: path.join(shots, 'overview.png'), fullPage: true });
  },

  // Buttons of a server whose control mode does not allow them.
  async disabled(page, out) {
    await page.goto(`${base}/console/`);
    await page.waitForSelector('table.models tbody tr .why-disabled');
    out.buttons = await page.$$eval('table.models button', (b) => b.map((x) => ({ label: x.innerText, disabled: x.disabled })));
    out.why = await page.$eval('.why-disabled', (e) => e.innerText);
    await page.screenshot({ path: path.join(shots, 'overview-control-mode-none.png'), fullPage: true });
  },

  // A picture into the playground; the answer shown (classes or an output image).
  async playground(page, out) {
    await page.goto(`${base}/console/models/${args.model}`);
    await page.waitForSelector('#playground-file');
    await page.setInputFiles('#playground-file', args.image);
    await page.waitForSelector('#playground-latency', { timeout: TIMEOUT });
    out.latency = await page.$eval('#playground-latency', (e) => e.innerText);
    out.error = await page.$$eval('#playground-result .error', (e) => e.map((x) => x.innerText).join(' '));
    out.classes = await page.$$eval('#playground-classes tbody tr', (rows) => rows.map((r) => r.querySelector('td').innerText));
    out.scores = await page.$$eval('#playground-classes tbody tr', (rows) => rows.map((r) => Number(r.dataset.score)));
    out.output = await page.$$eval('#playground-output', (imgs) => imgs.map((img) => {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      return { width: c.width, height: c.height, pixels: Array.from(ctx.getImageData(0, 0, c.width, c.height).data) };
    }));
    out.sections = await page.$$eval('section.card h2', (h) => h.map((x) => x.innerText));
    await page.screenshot({ path: path.join(shots, `model-${args.model}.png`), fullPage: true });
  },

  // A token file closes every group: the page asks for the token, then shows everything.
  async token(page, out) {
    await page.goto(`${base}/console/`);
    await page.waitForFunction(() => document.getElementById('models-note').innerText.includes('statistics too'));
    out.note = await page.$eval('#models-note', (e) => e.innerText);
    out.access_open = await page.$eval('#access', (e) => e.open);
    await page.fill('#access-token', args.token);
    await page.click('#access-save');
    await page.waitForSelector('table.models tbody tr');
    out.models = await page.$$eval('table.models tbody tr', (rows) => rows.map((r) => r.dataset.model));
    await page.click(`tr[data-model="${args.model}"] button[data-action="unload"]`);
    await page.waitForFunction((m) => document.getElementById('action-status').innerText === `${m}: unloaded`, args.model, { timeout: TIMEOUT });
    await page.screenshot({ path: path.join(shots, 'overview-token.png'), fullPage: true });
  },

  // A model whose input is no picture: a JSON request, prefilled and valid.
  async json(page, out) {
    await page.goto(`${base}/console/models/${args.model}`);
    await page.waitForSelector('#playground-json');
    out.prefilled = await page.inputValue('#playground-json');
    await page.click('#playground-send');
    await page.waitForSelector('#playground-latency');
    out.response = await page.$eval('#playground-result pre', (e) => e.innerText);
    await page.screenshot({ path: path.join(shots, `model-${args.model}.png`), fullPage: true });
  },

  // Restricted repository API: the overview still lists the loaded models (statistics), an
  // unload without the key is refused and says why, the same unload with the key succeeds.
  async restricted(page, out) {
    await page.goto(`${base}/console/`);
    await page.waitForSelector('table.models tbody tr');
    out.note = await page.$eval('#models-note', (e) => e.innerText);
    out.models = await page.$$eval('table.models tbody tr', (rows) => rows.map((r) => r.dataset.model));
    const model = args.model;
    await page.click(`tr[data-model="${model}"] button[data-action="unload"]`);
    await page.waitForFunction(() => document.getElementById('action-status').className.includes('error'), null, { timeout: TIMEOUT });
    out.refusal = await page.$eval('#action-status', (e) => e.innerText);
    out.access_open = await page.$eval('#access', (e) => e.open);
    out.header_prefilled = await page.inputValue('#access-header');
    out.ready_after_refused_unload = await ready(model);
    await page.screenshot({ path: path.join(shots, 'overview-restricted.png'), fullPage: true });
    await page.fill('#access-value', args.key);
    await page.click('#access-save');
    await page.click(`tr[data-model="${model}"] button[data-action="unload"]`);
    await page.waitForFunction((m) => document.getElementById('action-status').innerText === `${m}: unloaded`, model, { timeout: TIMEOUT });
    out.ready_after_unload_with_key = await ready(model);
  },
};

(async () => {
  const out = { requests: [], console_errors: [], page_errors: [] };
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(TIMEOUT);
    page.on('request', (r) => out.requests.push(r.url()));
    page.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(m.text()); });
    page.on('pageerror', (e) => out.page_errors.push(String(e)));
    await scenarios[scenario](page, out);
  } catch (e) {
    out.failure = String(e && e.stack ? e.stack : e);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
})();
