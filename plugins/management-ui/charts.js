// Warren management UI: the overview's charts, drawn on <canvas> by drawChart from samples this
// page collects itself (message_stats.*_details.rate and queue_totals of GET /api/overview, one
// sample per poll), so they need nothing beyond RabbitMQ's plain API. Loaded after app.js.
'use strict';

const HISTORY = 60; // chart samples kept: 5 minutes at one sample per poll

const RATE_SERIES = [
  ['publish', 'Publish', '#e07b00'],
  ['confirm', 'Publisher confirm', '#7a4fb5'],
  ['deliver_get', 'Deliver / get', '#2a7fd4'],
  ['redeliver', 'Redelivered', '#c33'],
  ['ack', 'Consumer ack', '#2c9f45'],
];
const QUEUED_SERIES = [
  ['messages_ready', 'Ready', '#e0b000'],
  ['messages_unacknowledged', 'Unacked', '#2a7fd4'],
  ['messages', 'Total', '#888'],
];

function recordSample(overview) {
  const ms = overview.message_stats || {};
  const qt = overview.queue_totals || {};
  const rates = {};
  for (const [k] of RATE_SERIES) rates[k] = (ms[k + '_details'] && ms[k + '_details'].rate) || 0;
  const queued = {};
  for (const [k] of QUEUED_SERIES) queued[k] = qt[k] || 0;
  state.history.push({ t: Date.now(), rates, queued });
  if (state.history.length > HISTORY) state.history.shift();
}

// A rounded grid step (1, 2, 2.5, 5 × 10^n) at or above v; whole numbers for counts.
function niceStep(v, whole) {
  if (!(v > 0)) return whole ? 1 : 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of (whole && p < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10])) {
    if (m * p >= v) return whole ? Math.max(1, m * p) : m * p;
  }
  return 10 * p;
}

const axisLabel = (v) => (Number.isInteger(v) ? v.toLocaleString('en-US') : String(Number(v.toFixed(2))));

// Line chart of series [{label, color, values}] over the sample times `times` (ms).
function drawChart(canvas, times, series, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 560;
  const hgt = canvas.clientHeight || 200;
  canvas.width = w * dpr;
  canvas.height = hgt * dpr;
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, w, hgt);
  const left = 56, right = 20, top = 8, bottom = 22;
  const pw = w - left - right, ph = hgt - top - bottom;
  const max = 4 * niceStep(Math.max(0, ...series.flatMap((s) => s.values)) / 4, unit === '');
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.strokeStyle = i === 0 ? '#999' : '#e5e5e5';
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
    const v = (max * i) / 4;
    ctx.fillStyle = '#555';
    ctx.textAlign = 'right';
    ctx.fillText(axisLabel(v) + unit, left - 4, y);
  }
  const span = HISTORY * POLL_MS;
  const t1 = times.length ? times[times.length - 1] : Date.now();
  const x = (t) => left + pw - ((t1 - t) / span) * pw;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let m = 0; m <= 5; m++) {
    ctx.fillText(m === 0 ? 'now' : `-${m} min`, left + pw - (m * 60000 / span) * pw, top + ph + 5);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const px = x(times[i]), py = top + ph - (v / max) * ph;
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
    const last = s.values.length - 1;
    if (last >= 0) {
      ctx.beginPath();
      ctx.arc(x(times[last]), top + ph - (s.values[last] / max) * ph, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  canvas.dataset.samples = String(times.length);
}

// A legend's colour box. The colour is set through the CSSOM, not a style attribute, so a
// Content-Security-Policy without 'unsafe-inline' styles allows it.
function swatch(color) {
  const el = h('i');
  el.style.background = color;
  return el;
}

function chartBox(id, title, series, unit, pick) {
  const canvas = h('canvas', { id, width: 560, height: 200, role: 'img', 'aria-label': title });
  const legend = h('div.legend');
  const box = h('div.chart', {}, h('h3', {}, title), canvas, legend);
  box.update = () => {
    const times = state.history.map((s) => s.t);
    const data = series.map(([k, label, color]) => ({ label, color, values: state.history.map((s) => pick(s)[k]) }));
    drawChart(canvas, times, data, unit);
    replace(legend, data.map((d) => h('span', {}, swatch(d.color),
      d.label + ': ' + (d.values.length ? (unit ? d.values[d.values.length - 1].toFixed(2) + unit : num(d.values[d.values.length - 1])) : '-'))));
  };
  return box;
}
