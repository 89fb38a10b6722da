// Silences (active or all; end one early) and maintenance windows (recurring: daily, weekly or
// monthly, e.g. a bridge's monthly inspection night; add, delete).
import { api } from "./api.js";
import { getCatalogue, session } from "./session.js";
import { ask, cityTime, h, pagedTable, showError, when } from "./ui.js";

const matchers = (m) => Object.entries(m || {}).map(([k, v]) => `${k}=${v}`).join(", ");
const MATCHERS = ["rule", "kind", "district", "device", "severity"];

function endButton(s, table, container) {
  if (!session.canAct()) return "";
  return h("button", { class: "act-end", onclick: async () => {
    try {
      await api(`/api/v1/silences/${encodeURIComponent(s.id)}`, { method: "DELETE" });
      table.reload();
    } catch (e) { showError(container, e); }
  } }, "End now");
}

export async function render(container) {
  const active = h("select", {}, h("option", { value: "true" }, "active"), h("option", { value: "false" }, "all"));
  container.append(h("h1", {}, "Silences"), h("div", { class: "filters" }, h("label", {}, "show", active)));
  const table = pagedTable(container, [["matchers", (s) => matchers(s.matchers)], ["from", (s) => when(s.start)],
    ["until", (s) => when(s.end)], ["reason", (s) => s.reason], ["by", (s) => s.created_by], ["", (s) => endButton(s, table, container)]],
  async () => {
    const data = await api("/api/v1/silences", { params: { active: active.value } });
    return Array.isArray(data) ? { items: data } : data;
  }, { empty: "no silences" });
  active.addEventListener("change", () => table.reload());
}

async function addWindow(cat, table, container) {
  const v = await ask("New maintenance window", [
    ...MATCHERS.map((m) => ({ name: m, label: `${m} (optional)`, ...(m === "kind" ? { options: ["", ...Object.keys(cat.kinds)] } : {}) })),
    { name: "start", label: "first start (the city's time)", type: "datetime-local", required: true },
    { name: "duration", label: "duration (e.g. 8h)", value: "8h", required: true },
    { name: "every", label: "repeats", options: ["", "daily", "weekly", "monthly"], value: "monthly" },
    { name: "reason", label: "reason", required: true }], "Add");
  if (!v) return;
  const body = { matchers: Object.fromEntries(MATCHERS.filter((m) => v[m]).map((m) => [m, v[m]])),
    start: cityTime(v.start), duration: v.duration, every: v.every || null, reason: v.reason };
  try {
    await api("/api/v1/maintenance", { method: "POST", body });
    table.reload();
  } catch (e) { showError(container, e); }
}

export async function renderMaintenance(container) {
  const cat = await getCatalogue();
  const head = h("h1", {}, "Maintenance windows");
  container.append(head);
  let table = null;
  if (session.canAct()) container.append(h("button", { class: "act-add", onclick: () => addWindow(cat, table, container) }, "Add a window"));
  const del = (w) => (session.canAct() ? h("button", { onclick: async () => {
    try { await api(`/api/v1/maintenance/${encodeURIComponent(w.id)}`, { method: "DELETE" }); table.reload(); } catch (e) { showError(container, e); }
  } }, "Delete") : "");
  table = pagedTable(container, [["matchers", (w) => matchers(w.matchers)], ["first start", (w) => when(w.start)],
    ["duration", (w) => w.duration], ["repeats", (w) => w.every || "once"], ["next", (w) => when(w.next_start)],
    ["reason", (w) => w.reason], ["", del]],
  async () => {
    const data = await api("/api/v1/maintenance");
    return Array.isArray(data) ? { items: data } : data;
  }, { empty: "no maintenance windows" });
}
