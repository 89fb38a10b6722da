// Tiles per kind: devices online and offline, readings per minute, open alerts by severity;
// refreshed by the live stream's "tiles" events.
import { api } from "./api.js";
import { getCatalogue, on } from "./session.js";
import { h } from "./ui.js";

function tile(kind, info, t) {
  const open = Object.entries(t.open).filter(([, n]) => n > 0);
  return h("div", { class: "tile", dataset: { kind } },
    h("h3", {}, info.title, " ", h("span", { class: "muted" }, info.title_zh)),
    h("div", {}, h("span", { class: "big online" }, t.online), " online · ",
      h("span", { class: "big offline" }, t.offline), " offline"),
    h("div", {}, t.readings_per_min === null ? "readings/min: —" : `readings/min: ${t.readings_per_min}`),
    h("div", {}, open.length ? open.map(([s, n]) => h("span", { class: `sev ${s}` }, `${n} ${s}`)) : "no open alerts"),
    h("a", { href: `/#/alerts` }, "alerts"));
}

export async function render(container) {
  const cat = await getCatalogue();
  const grid = h("div", { class: "tiles" });
  container.append(h("h1", {}, "Kinds"), grid);
  const draw = (s) => grid.replaceChildren(...Object.entries(s.kinds).map(([k, t]) => tile(k, cat.kinds[k], t)));
  draw(await api("/api/v1/summary"));
  return on("tiles", draw);
}
