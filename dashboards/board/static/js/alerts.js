// The open alerts: firing first, then acknowledged, each most severe and newest first (the API's
// order), filtered by district, kind and severity on the server, paged with its cursor. The live
// stream's alert events reload the lists, so a new alert appears without reloading the page.
import { actionButtons } from "./actions.js";
import { api, download } from "./api.js";
import { getCatalogue, on } from "./session.js";
import { alertLink, deviceLink, h, sev, showError, state, valueOf, when } from "./ui.js";

const PAGE = 50;
const SECTIONS = { firing: "Firing", acknowledged: "Acknowledged" };

function row(a, reload) {
  return h("tr", { dataset: { alertId: a.id, state: a.state } },
    h("td", {}, sev(a.severity)), h("td", {}, state(a.state)), h("td", {}, alertLink(a.id)),
    h("td", {}, a.summary), h("td", {}, deviceLink(a.device_id), h("br"), h("span", { class: "muted" }, a.district)),
    h("td", {}, valueOf(a)), h("td", {}, when(a.fired_at || a.started_at)),
    h("td", {}, a.acknowledged_by ? `${a.acknowledged_by}: ${a.ack_note || ""}` : a.assignee || ""),
    h("td", {}, actionButtons(a, reload)));
}

// an alert as the list shows it, from a stream event (the webhook's alert and device objects)
const fromEvent = (ev) => ({ ...ev.alert, state: ev.state, device_id: ev.device.id, district: ev.device.district,
  kind: ev.device.kind, device: ev.device });

function section(title) {
  const body = h("tbody");
  const more = h("button", { class: "more", hidden: true }, "More");
  const count = h("span", { class: "muted" });
  const el = h("div", { class: "card" }, h("h2", {}, title, " ", count),
    h("table", {}, h("thead", {}, h("tr", {}, ["severity", "state", "alert", "summary", "device", "value / limit",
      "since", "who", ""].map((t) => h("th", {}, t)))), body), more);
  return { el, body, more, count, next: null };
}

function filterBar(cat, districts, onChange, onExport) {
  const select = (name, label, values) => h("label", {}, label,
    h("select", { name, onchange: onChange }, h("option", { value: "" }, "all"), values.map((v) => h("option", { value: v }, v))));
  return h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    select("district", "district", districts), select("kind", "kind", Object.keys(cat.kinds)),
    select("severity", "severity", cat.severities),
    h("button", { type: "button", class: "export", onclick: onExport }, "Export CSV"));
}

export async function render(container) {
  const cat = await getCatalogue();
  const sections = Object.fromEntries(Object.entries(SECTIONS).map(([s, t]) => [s, section(t)]));
  let filters = {};
  const bar = filterBar(cat, [], () => {
    filters = Object.fromEntries(new FormData(bar).entries());
    reload();
  }, () => download("/api/v1/alerts", { format: "csv", limit: 1000, ...filters }, "alerts.csv")
    .catch((e) => showError(container, e)));
  container.append(h("h1", {}, "Open alerts"), bar, ...Object.values(sections).map((s) => s.el));
  // the districts (from the tiles, whose first count can take a while) fill the filter when known
  api("/api/v1/summary").then((summary) => bar.elements.district.append(
    ...Object.keys(summary.districts || {}).map((d) => h("option", { value: d }, d)))).catch((e) => showError(container, e));

  async function load(st, cursor) {
    const s = sections[st];
    const data = await api("/api/v1/alerts", { params: { state: st, limit: PAGE, cursor, ...filters } });
    if (!cursor) s.body.replaceChildren();
    for (const a of data.items) s.body.append(row(a, reload));
    if (!s.body.children.length) s.body.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, "none")));
    s.next = data.next;
    s.more.hidden = !data.next;
    s.count.textContent = `(${data.total ?? data.items.length})`;
    return data.items.map((a) => a.id);
  }
  for (const [st, s] of Object.entries(sections)) s.more.addEventListener("click", () => load(st, s.next));

  async function reload() {
    try {
      const ids = await Promise.all(Object.keys(sections).map((st) => load(st, null)));
      return ids.flat();
    } catch (e) {
      showError(container, e);
      return [];
    }
  }
  await reload();

  // live: an open alert's event shows at once (a row from the event's own data), then the lists
  // reload 50 ms after the burst; an alert the reload did not see yet (its commit still under
  // way) keeps its row, and the lists reload once more a second later
  let timer = null;
  const pending = new Map();
  const show = (ev) => {
    const section = sections[ev.state];
    if (!section || container.querySelector(`tr[data-alert-id="${CSS.escape(ev.alert.id)}"]`)) return;
    const tr = row(fromEvent(ev), reload);
    tr.classList.add("fresh");
    section.body.prepend(tr);
  };
  const offAlert = on("alert", (ev) => {
    if (ev.state) pending.set(ev.alert.id, ev);
    show(ev);
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ids = await reload();
      const unseen = [...pending.values()].filter((e) => e.state !== "resolved" && !ids.includes(e.alert.id));
      pending.clear();
      unseen.forEach(show);
      if (unseen.length) setTimeout(reload, 1000);
    }, 50);
  });
  const offResync = on("resync", reload);
  return () => { clearTimeout(timer); offAlert(); offResync(); };
}
