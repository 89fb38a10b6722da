// Charts with uPlot (vendored, static/vendor/uplot): a metric's points over a range, read with
// the store's `step` downsampling so a chart never asks for more than about MAX_POINTS points.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { api } from "./api.js";
import { h, zone } from "./ui.js";

const MAX_POINTS = 600;
const STEPS = [["10s", 10e3], ["30s", 30e3], ["1m", 60e3], ["5m", 300e3], ["15m", 900e3], ["1h", 3600e3],
  ["3h", 3 * 3600e3], ["6h", 6 * 3600e3], ["1d", 86400e3]];

// the smallest step cutting [start, end] into at most MAX_POINTS; null (raw points) when short
export function stepFor(startMs, endMs) {
  const span = endMs - startMs;
  if (span <= MAX_POINTS * 10e3) return null;
  const found = STEPS.find(([, ms]) => span / ms <= MAX_POINTS);
  return found ? found[0] : STEPS[STEPS.length - 1][0];
}

export async function readings(deviceId, metric, startMs, endMs) {
  const step = stepFor(startMs, endMs);
  const data = await api(`/api/v1/devices/${encodeURIComponent(deviceId)}/readings`,
    { params: { metric, start: Math.round(startMs), end: Math.round(endMs), step, limit: 100000 } });
  return { points: data.points, step };
}

// A line chart in `container`: series [{label, points: [[ms, v], ...]}] sharing one x axis
// (points of later series are placed on the first's timestamps when they are constant lines).
export function lineChart(container, title, series, { width, height = 260, marks = [] } = {}) {
  const xs = series[0].points.map((p) => p[0] / 1000);
  const data = [xs, ...series.map((s) => s.points.map((p) => p[1]))];
  for (const m of marks) data.push(xs.map(() => m.value));
  const colors = ["#1971c2", "#2b8a3e", "#7048e8", "#e8590c"];
  const opts = {
    title, width: width || Math.max(320, container.clientWidth - 20), height,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 1.5 })),
      ...marks.map((m) => ({ label: m.label, stroke: "#c0152f", dash: [6, 4], width: 1 }))],
    scales: { x: { time: true } },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), zone()), // the city's wall time, as everywhere
  };
  const box = h("div", { class: "chart" });
  container.append(box);
  return new uPlot(opts, data, box);
}

// A chart fed point by point (live telemetry): the last `keep` points, over at least `spanS` seconds
export function liveChart(container, title, label, { keep = 300, spanS = 300 } = {}) {
  const xs = [];
  const ys = [];
  const plot = lineChart(container, title, [{ label, points: [] }], { height: 200 });
  return {
    push(ms, v) {
      xs.push(ms / 1000);
      ys.push(v);
      if (xs.length > keep) { xs.shift(); ys.shift(); }
      plot.setData([xs, ys]);
      const last = xs[xs.length - 1];
      plot.setScale("x", { min: Math.min(xs[0], last - spanS), max: last + 5 });
    },
    destroy: () => plot.destroy(),
  };
}
