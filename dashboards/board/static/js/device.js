// A device: its registry facts, a metric charted over a chosen range (downsampled by the store's
// `step`), its events, its alert history, and its telemetry live as it arrives (SSE from the API,
// which subscribes to the device's topic on the broker).
import { api, stream } from "./api.js";
import { lineChart, liveChart, readings } from "./chart.js";
import { getCatalogue } from "./session.js";
import { alertLink, fmt, h, pagedTable, sev, showError, state, when } from "./ui.js";

const RANGES = { "1 hour": 3600e3, "6 hours": 6 * 3600e3, "24 hours": 86400e3, "7 days": 7 * 86400e3, "30 days": 30 * 86400e3 };

function facts(d) {
  const rows = [["device", d.device_id], ["kind", d.kind], ["district", d.district], ["asset", `${d.asset_id} ${d.asset_name || ""}`],
    ["responsible unit", d.responsible_unit], ["status", d.status], ["online", d.online ? "yes" : "no"],
    ["last seen", d.last_seen ? when(d.last_seen) : "never"], ["position", d.lat !== null ? `${d.lat}, ${d.lon}` : ""],
    ["attributes", Object.keys(d.attrs || {}).length ? JSON.stringify(d.attrs) : ""]];
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function metricChart(card, d, metrics) {
  const metric = h("select", {}, metrics.map((m) => h("option", { value: m }, m)));
  const range = h("select", {}, Object.keys(RANGES).map((r) => h("option", { value: r, selected: r === "24 hours" }, r)));
  const plot = h("div");
  async function draw() {
    plot.replaceChildren();
    const end = Date.now();
    try {
      const { points, step } = await readings(d.device_id, metric.value, end - RANGES[range.value], end);
      if (!points.length) return plot.append(h("p", { class: "muted" }, "no readings in this range"));
      lineChart(plot, `${metric.value}${step ? ` (mean per ${step})` : ""}`, [{ label: metric.value, points }]);
    } catch (e) {
      showError(plot, e);
    }
  }
  metric.addEventListener("change", draw);
  range.addEventListener("change", draw);
  card.append(h("div", { class: "filters" }, h("label", {}, "metric", metric), h("label", {}, "range", range)), plot);
  draw();
}

function liveView(card, d, metrics) {
  const pick = h("select", {}, metrics.map((m) => h("option", { value: m }, m)));
  const status = h("span", { class: "muted" }, "connecting…");
  const log = h("pre", { class: "live-log" });
  card.append(h("h3", {}, "Live ", status), h("label", {}, "metric ", pick));
  let chart = liveChart(card, "", pick.value);
  pick.addEventListener("change", () => { chart.destroy(); chart = liveChart(card, "", pick.value); card.append(log); });
  card.append(log);
  const abort = new AbortController();
  stream(`/api/v1/devices/${encodeURIComponent(d.device_id)}/live`, (name, data) => {
    if (name === "ready") status.textContent = `subscribed to ${data.topic}`;
    if (name === "failed") status.textContent = data.detail;
    if (name !== "message") return;
    const line = `${when(Date.now())} ${data.channel} ${typeof data.payload === "string" ? data.payload : JSON.stringify(data.payload)}`;
    log.textContent = `${line}\n${log.textContent}`.slice(0, 20000);
    const p = data.payload;
    for (const r of data.channel === "telemetry" && p && typeof p === "object" ? (p.readings || [p]) : []) {
      const v = r.metrics ? r.metrics[pick.value] : undefined;
      if (typeof v === "number") chart.push(typeof r.ts === "number" ? r.ts : Date.parse(r.ts), v);
    }
  }, { signal: abort.signal });
  return () => abort.abort();
}

export async function render(container, id) {
  let d;
  try {
    d = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
  } catch (e) {
    return showError(container, e);
  }
  const cat = await getCatalogue();
  const metrics = Object.keys(cat.kinds[d.kind]?.metrics || {});
  const chartCard = h("div", { class: "card range-card" });
  const liveCard = h("div", { class: "card live-card" });
  const alertsCard = h("div", { class: "card" }, h("h3", {}, "Alerts"));
  const events = (d.events || []).map((e) => h("tr", {}, h("td", {}, when(e.at || e.ts)), h("td", {}, e.type),
    h("td", {}, JSON.stringify(e.detail ?? ""))));
  container.append(h("h1", {}, d.device_id, " ", h("span", { class: "muted" }, `${d.kind} · ${d.district}`)),
    h("div", { class: "cards" }, h("div", {}, h("div", { class: "card" }, facts(d)),
      h("div", { class: "card" }, h("h3", {}, "Events"), h("table", {}, h("tbody", {}, events.length ? events : h("tr", {}, h("td", { class: "muted" }, "none")))))),
    h("div", {}, chartCard, liveCard, alertsCard)));
  metricChart(chartCard, d, metrics);
  pagedTable(alertsCard, [["severity", (a) => sev(a.severity)], ["state", (a) => state(a.state)], ["alert", (a) => alertLink(a.id)],
    ["summary", (a) => a.summary], ["value", (a) => fmt(a.value)], ["started", (a) => when(a.started_at)]],
  (cursor) => api("/api/v1/alerts", { params: { device_id: d.device_id, limit: 20, cursor } }), { empty: "no alerts" });
  return liveView(liveCard, d, metrics);
}
