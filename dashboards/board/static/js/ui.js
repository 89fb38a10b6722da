// Small DOM helpers shared by the views.

// h("td", {class: "x", onclick: f}, child, ...): an element; strings become text (never HTML)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const sev = (s) => h("span", { class: `sev ${s}` }, s || "");
export const state = (s) => h("span", { class: `state ${s}` }, s || "");

// The city's time zone (catalogue.json): every time is shown in it, as the API writes them
let cityZone = "Asia/Shanghai";
export const setZone = (z) => { cityZone = z || cityZone; };
export const zone = () => cityZone;
const wall = (ms) => new Intl.DateTimeFormat("sv-SE", { timeZone: cityZone, dateStyle: "short", timeStyle: "medium" }).format(ms);

// A wall time typed in the city's zone ("2026-12-07T01:00" from a datetime-local input) as RFC 3339
// with the city's offset at that time (the offset of a zone without summer time, e.g. +08:00)
export function cityTime(local) {
  const guess = new Date(`${local}:00Z`);
  const name = new Intl.DateTimeFormat("en-US", { timeZone: cityZone, timeZoneName: "longOffset" })
    .formatToParts(guess).find((p) => p.type === "timeZoneName").value; // "GMT+08:00" or "GMT"
  const offset = name === "GMT" ? "+00:00" : name.slice(3);
  return `${local}:00${offset}`;
}

// RFC 3339 (with the city's offset, as the API gives it) or epoch ms, as the city's wall time
export function when(t) {
  if (!t) return "";
  if (typeof t === "number") return wall(t);
  return String(t).replace("T", " ").replace(/(\.\d+)?([+-]\d\d:\d\d|Z)$/, "");
}

export function fmt(v, digits = 2) {
  if (v === null || v === undefined) return "";
  return typeof v === "number" ? String(Number(v.toFixed(digits))) : String(v);
}

// "value / limit", empty when the alert has neither (an event's alert)
export const valueOf = (a) => (a.value ?? a.threshold ?? null) === null ? "" : `${fmt(a.value)} / ${fmt(a.threshold)}`;

export const deviceLink = (id) => h("a", { class: "id", href: `/#/device/${encodeURIComponent(id)}` }, id);
export const alertLink = (id) => h("a", { class: "id", href: `/alerts/${encodeURIComponent(id)}` }, id);

export function showError(container, e) {
  container.append(h("p", { class: "error" }, e.message || String(e)));
}

// A modal form: fields [{name, label, value, type, options, required}] -> values, or null if cancelled
export function ask(title, fields, submit = "OK") {
  const dialog = document.getElementById("ask");
  const form = dialog.querySelector("form");
  form.replaceChildren(
    h("h3", {}, title),
    ...fields.map((f) => h("label", {}, f.label, f.options
      ? h("select", { name: f.name }, f.options.map((o) => h("option", { value: o, selected: o === f.value }, o)))
      : h("input", { name: f.name, type: f.type || "text", value: f.value ?? "", required: f.required }))),
    h("div", {}, h("button", { value: "ok", class: "ok" }, submit), " ",
      h("button", { value: "cancel", formnovalidate: true }, "Cancel")),
  );
  return new Promise((done) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return done(null);
      done(Object.fromEntries(new FormData(form).entries()));
    }, { once: true });
    dialog.showModal();
  });
}

// A table paged on the server: load(cursor) -> {items, next, total}; columns [[title, item => cell]]
export function pagedTable(container, columns, load, { empty = "nothing" } = {}) {
  const body = h("tbody");
  const count = h("p", { class: "muted" });
  const more = h("button", { class: "more", hidden: true }, "More");
  let next = null;
  async function page(cursor) {
    more.disabled = true;
    try {
      const data = await load(cursor);
      if (!cursor) body.replaceChildren();
      for (const item of data.items) body.append(h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(item)))));
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
      next = data.next ?? null;
      more.hidden = !next;
      count.textContent = data.total !== undefined ? `${data.total} in all` : "";
    } catch (e) {
      showError(container, e);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => page(next));
  container.append(count, h("table", {}, h("thead", {}, h("tr", {}, columns.map(([t]) => h("th", {}, t)))), body), more);
  page(null);
  return { reload: () => page(null) };
}
