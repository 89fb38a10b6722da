// The quarantine (rejected messages with their reasons; filtered by device, kind, reason) and the
// webhook deliveries (with their failures), both paged on the server.
import { api } from "./api.js";
import { on } from "./session.js";
import { alertLink, deviceLink, h, pagedTable, when } from "./ui.js";

function filters(names, onChange) {
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); onChange(); } },
    names.map(([name, label, options]) => h("label", {}, label, options
      ? h("select", { name, onchange: onChange }, options.map((o) => h("option", { value: o }, o || "all")))
      : h("input", { name, onchange: onChange }))));
  return { form, values: () => Object.fromEntries(new FormData(form).entries()) };
}

export async function renderQuarantine(container) {
  const f = filters([["device_id", "device"], ["kind", "kind"], ["reason", "reason"]], () => table.reload());
  container.append(h("h1", {}, "Quarantine"), f.form);
  const table = pagedTable(container, [["received", (q) => when(q.received_at || q.ts)], ["reason", (q) => q.reason],
    ["code", (q) => q.code || ""], ["device", (q) => (q.device_id ? deviceLink(q.device_id) : "")], ["kind", (q) => q.kind || ""],
    ["topic", (q) => q.topic]],
  (cursor) => api("/api/v1/quarantine", { params: { limit: 100, cursor, ...f.values() } }), { empty: "the quarantine is empty" });
}

export async function renderDeliveries(container) {
  const f = filters([["status", "status", ["", "failed", "pending", "scheduled", "delivered", "cancelled"]]], () => table.reload());
  container.append(h("h1", {}, "Webhook deliveries"), f.form);
  const table = pagedTable(container, [["created", (d) => when(d.created_at)], ["alert", (d) => alertLink(d.alert_id)],
    ["notice", (d) => d.notice], ["receiver", (d) => d.receiver], ["status", (d) => h("span", { class: `delivery ${d.status}` }, d.status)],
    ["attempts", (d) => d.attempts], ["last error", (d) => h("span", { class: "error" }, d.last_error || "")],
    ["next attempt", (d) => when(d.next_attempt_at)]],
  (cursor) => api("/api/v1/deliveries", { params: { limit: 100, cursor, ...f.values() } }), { empty: "no deliveries" });
}

// What citywatch up's built-in receiver got (GET /api/v1/demo/webhooks, under `up` only): each
// signed delivery with whether its signature verified, so the whole path is visible.
export async function renderReceived(container) {
  container.append(h("h1", {}, "Webhooks received (citywatch up's receiver)"));
  const table = pagedTable(container, [["received", (r) => when(r.received_at)],
    ["verified", (r) => h("span", { class: r.verified ? "delivery delivered" : "delivery failed" },
      r.verified ? (r.repeat ? "yes (repeat)" : "yes") : `no: ${r.problem}`)],
    ["status", (r) => r.status || ""], ["reason", (r) => r.reason || ""],
    ["alert", (r) => (r.alert ? alertLink(r.alert.id) : "")], ["severity", (r) => r.alert?.severity || ""],
    ["summary", (r) => r.alert?.summary || ""], ["device", (r) => (r.device ? deviceLink(r.device.id) : "")]],
  async () => {
    const data = await api("/api/v1/demo/webhooks", { params: { limit: 200 } });
    return { items: data.items, total: data.received, next: null };
  }, { empty: "nothing received yet" });
  // a webhook follows its alert's transition by the dispatcher's round trip: look again shortly
  // after each live alert event, and every 10 s for retries
  const off = on("alert", () => setTimeout(() => table.reload(), 1500));
  const timer = setInterval(() => table.reload(), 10_000);
  return () => { off(); clearInterval(timer); };
}
