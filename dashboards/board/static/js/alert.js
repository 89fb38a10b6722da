// One alert (/alerts/{id}, where a webhook's alert.url lands): its facts, history, comments,
// the readings of its metric around it charted with the threshold, and the actions.
import { actionButtons } from "./actions.js";
import { api } from "./api.js";
import { lineChart, readings } from "./chart.js";
import { on } from "./session.js";
import { deviceLink, fmt, h, sev, showError, state, valueOf, when } from "./ui.js";

const BEFORE_MS = 30 * 60e3;
const AFTER_MS = 10 * 60e3;

function facts(a) {
  const d = a.device || {};
  const rows = [["alert", a.id], ["rule", a.rule], ["state", state(a.state)], ["severity", sev(a.severity)],
    ["summary", a.summary], ["device", deviceLink(a.device_id)], ["kind", a.kind], ["district", a.district],
    ["responsible unit", d.responsible_unit], ["assigned to", a.assignee], ["metric", a.metric],
    ["value / limit", valueOf(a)], ["started", when(a.started_at)],
    ["fired", when(a.fired_at)], ["ended", when(a.ended_at)],
    ["acknowledged", a.acknowledged_by ? `${a.acknowledged_by} at ${when(a.acknowledged_at)}: ${a.ack_note || ""}` : ""],
    ["silenced", a.silenced ? "yes" : ""]];
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, v)]));
}

function history(a) {
  const rows = (a.history || []).map((e) => h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.change),
    h("td", {}, e.severity || ""), h("td", {}, fmt(e.value)), h("td", {}, e.by || ""), h("td", {}, e.note || "")));
  const comments = (a.comments || []).map((c) => h("tr", {}, h("td", {}, when(c.at)), h("td", {}, "comment"),
    h("td", {}), h("td", {}), h("td", {}, c.by || ""), h("td", {}, c.text)));
  return h("table", { class: "history" }, h("thead", {}, h("tr", {}, ["at", "change", "severity", "value", "by", "note"]
    .map((t) => h("th", {}, t)))), h("tbody", {}, rows, comments));
}

async function chart(container, a) {
  if (!a.metric) return container.append(h("p", { class: "muted" }, `${a.rule} watches events: no readings to chart`));
  const start = Date.parse(a.started_at) - BEFORE_MS;
  const end = Math.min(Date.now(), (a.ended_at ? Date.parse(a.ended_at) : Date.now()) + AFTER_MS);
  const { points, step } = await readings(a.device_id, a.metric, start, end);
  if (!points.length) return container.append(h("p", { class: "muted" }, `no ${a.metric} readings around the alert`));
  const marks = a.threshold !== null && a.threshold !== undefined ? [{ label: "threshold", value: a.threshold }] : [];
  lineChart(container, `${a.metric}${step ? ` (mean per ${step})` : ""}`, [{ label: a.metric, points }], { marks });
}

export async function render(container, id) {
  const head = h("div");
  const body = h("div", { class: "cards" });
  container.append(head, body);
  async function load() {
    const a = await api(`/api/v1/alerts/${encodeURIComponent(id)}`);
    document.title = `${a.id} · ${a.summary}`;
    head.replaceChildren(h("h1", {}, sev(a.severity), " ", a.summary), actionButtons(a, load));
    const left = h("div", { class: "card" }, facts(a));
    const right = h("div", {}, h("div", { class: "card chart-card" }), h("div", { class: "card" }, h("h3", {}, "History"), history(a)));
    body.replaceChildren(left, right);
    chart(right.firstChild, a).catch((e) => showError(right.firstChild, e));
  }
  try {
    await load();
  } catch (e) {
    return showError(container, e);
  }
  return on("alert", (ev) => { if (ev.alert.id === id) load().catch((e) => showError(container, e)); });
}
