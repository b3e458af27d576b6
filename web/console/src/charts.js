// Live charts of the statistics endpoint: request rate, p50/p99 latency and mean queue
// time per model, over the last minutes. Rates and latencies are of each interval
// between two polls (differences of the cumulative counters); percentiles come from the
// latency histograms (interpolated within a bucket, as Prometheus' histogram_quantile).
import uPlot from 'uplot';
import { h } from './dom.js';

const WINDOW_S = 300;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

const CHARTS = [
  { key: 'rate', title: 'Requests / s' },
  { key: 'p50', title: 'p50 latency (ms)' },
  { key: 'p99', title: 'p99 latency (ms)' },
  { key: 'queue', title: 'Mean queue time (ms)' },
];

// Sum of each model's versions.
function totals(stats) {
  const out = new Map();
  for (const s of stats.model_stats || []) {
    const t = out.get(s.name) || { count: 0, ns: 0, qcount: 0, qns: 0, hist: null };
    const is = s.inference_stats || {};
    t.count += Number(is.success?.count || 0);
    t.ns += Number(is.success?.ns || 0);
    t.qcount += Number(is.queue?.count || 0);
    t.qns += Number(is.queue?.ns || 0);
    const hr = s.latency_histograms?.request;
    if (hr) {
      if (!t.hist) t.hist = { bounds: hr.bounds_ms, cumulative: hr.cumulative.map(Number) };
      else hr.cumulative.forEach((c, i) => (t.hist.cumulative[i] += Number(c)));
    }
    out.set(s.name, t);
  }
  return out;
}

// The q-quantile of the requests between two cumulative histograms, in ms.
export function quantile(q, bounds, before, after) {
  const counts = after.map((c, i) => c - (before ? before[i] : 0));
  const total = counts[counts.length - 1];
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1]; // in +Inf: the last bound
      const lo = i === 0 ? 0 : bounds[i - 1];
      const below = i === 0 ? 0 : counts[i - 1];
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lo + ((bounds[i] - lo) * (rank - below)) / inBucket : bounds[i];
    }
  }
  return null;
}

export class LiveCharts {
  constructor(container) {
    this.container = container;
    this.times = [];
    this.series = new Map(); // model -> {rate: [], p50: [], p99: [], queue: []}
    this.prev = null;
    this.plots = [];
    this.names = '';
    this.noHistogram = false;
  }

  push(stats, nowMs) {
    const cur = totals(stats);
    const t = nowMs / 1000;
    if (this.prev) {
      const dt = t - this.prev.t;
      this.times.push(t);
      for (const name of cur.keys()) {
        if (!this.series.has(name)) {
          this.series.set(name, Object.fromEntries(CHARTS.map((c) => [c.key, this.times.slice(0, -1).map(() => null)])));
        }
      }
      for (const [name, s] of this.series) {
        const a = cur.get(name);
        const b = this.prev.totals.get(name);
        let rate = null, p50 = null, p99 = null, queue = null;
        if (a && b && dt > 0) {
          const n = a.count - b.count;
          rate = Math.max(0, n / dt);
          const qn = a.qcount - b.qcount;
          queue = qn > 0 ? (a.qns - b.qns) / qn / 1e6 : null;
          if (a.hist && n > 0) {
            p50 = quantile(0.5, a.hist.bounds, b.hist?.cumulative, a.hist.cumulative);
            p99 = quantile(0.99, a.hist.bounds, b.hist?.cumulative, a.hist.cumulative);
          }
        }
        this.noHistogram = [...cur.values()].length > 0 && [...cur.values()].every((v) => !v.hist);
        s.rate.push(rate);
        s.p50.push(p50);
        s.p99.push(p99);
        s.queue.push(queue);
      }
      while (this.times.length && this.times[0] < t - WINDOW_S) {
        this.times.shift();
        for (const s of this.series.values()) for (const c of CHARTS) s[c.key].shift();
      }
    }
    this.prev = { t, totals: cur };
    this.draw();
  }

  draw() {
    const names = [...this.series.keys()].sort();
    const key = names.join('\n');
    if (key !== this.names || this.plots.length === 0) {
      this.names = key;
      this.container.replaceChildren();
      this.plots = CHARTS.map((c) => {
        const box = h('div', { class: 'chart', 'data-chart': c.key });
        this.container.append(box);
        const opts = {
          title: c.title,
          width: 460,
          height: 200,
          scales: { x: { time: true } },
          series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false }))],
          axes: [{}, { size: 50 }],
        };
        return { chart: c, plot: new uPlot(opts, this.dataFor(c.key, names), box) };
      });
      if (this.noHistogram) {
        this.container.append(h('p', { class: 'hint' }, 'p50/p99 need the latency histograms, which the metrics endpoint turns on (--allow-metrics).'));
      }
    } else {
      for (const p of this.plots) p.plot.setData(this.dataFor(p.chart.key, names));
    }
  }

  dataFor(key, names) {
    return [this.times.slice(), ...names.map((n) => this.series.get(n)[key].slice())];
  }
}
