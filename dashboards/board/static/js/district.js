// A district: its devices drawn by latitude and longitude on a canvas (no map tiles: the board
// works offline), coloured by state: open alert (its severity), online, offline. Devices are read
// page by page from the API (up to MAX_DEVICES); a click opens the nearest device.
import { api } from "./api.js";
import { getCatalogue, on } from "./session.js";
import { h, showError } from "./ui.js";

const MAX_DEVICES = 20000;
const PAGE = 5000;
const COLORS = { critical: "#c0152f", major: "#e8590c", warning: "#e0a800", info: "#1971c2", online: "#2b8a3e", offline: "#98a2b3" };
const RANK = { info: 1, warning: 2, major: 3, critical: 4 };

async function devicesOf(district, kind) {
  const out = [];
  let cursor = null;
  do {
    const page = await api("/api/v1/devices", { params: { district, kind, limit: PAGE, cursor } });
    out.push(...page.items.filter((d) => d.lat !== null && d.lon !== null));
    cursor = page.next;
  } while (cursor && out.length < MAX_DEVICES);
  return { devices: out, truncated: Boolean(cursor) };
}

async function worstAlerts(district) {
  const worst = new Map();
  for (const st of ["firing", "acknowledged"]) {
    const page = await api("/api/v1/alerts", { params: { state: st, district, limit: 1000 } });
    for (const a of page.items) {
      if (a.district !== district) continue; // an API without the district filter
      if ((RANK[a.severity] || 0) > (RANK[worst.get(a.device_id)] || 0)) worst.set(a.device_id, a.severity);
    }
  }
  return worst;
}

function draw(canvas, devices, worst) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!devices.length) return () => null;
  const lats = devices.map((d) => d.lat), lons = devices.map((d) => d.lon);
  const m = 0.002; // degrees around the devices (a single device is drawn in the middle)
  const [la0, la1, lo0, lo1] = [Math.min(...lats) - m, Math.max(...lats) + m, Math.min(...lons) - m, Math.max(...lons) + m];
  const kx = Math.cos(((la0 + la1) / 2) * Math.PI / 180); // equirectangular: a degree of longitude is shorter
  const pad = 20 * ratio;
  const scale = Math.min((canvas.width - 2 * pad) / Math.max((lo1 - lo0) * kx, 1e-6), (canvas.height - 2 * pad) / Math.max(la1 - la0, 1e-6));
  const ox = (canvas.width - (lo1 - lo0) * kx * scale) / 2, oy = (canvas.height - (la1 - la0) * scale) / 2;
  const xy = (d) => [ox + (d.lon - lo0) * kx * scale, canvas.height - oy - (d.lat - la0) * scale];
  const colour = (d) => COLORS[worst.get(d.device_id)] || (d.online ? COLORS.online : COLORS.offline);
  // alerting devices last, so they are drawn on top
  const order = [...devices].sort((a, b) => (RANK[worst.get(a.device_id)] || 0) - (RANK[worst.get(b.device_id)] || 0));
  for (const d of order) {
    const [x, y] = xy(d);
    ctx.fillStyle = colour(d);
    ctx.beginPath();
    ctx.arc(x, y, (worst.has(d.device_id) ? 5 : 3) * ratio, 0, 2 * Math.PI);
    ctx.fill();
  }
  return (px, py) => {
    let best = null, bestD = (12 * ratio) ** 2;
    for (const d of devices) {
      const [x, y] = xy(d);
      const dist = (x - px * ratio) ** 2 + (y - py * ratio) ** 2;
      if (dist < bestD) { best = d; bestD = dist; }
    }
    return best;
  };
}

export async function render(container, district) {
  const [cat, summary] = await Promise.all([getCatalogue(), api("/api/v1/summary")]);
  const names = Object.keys(summary.districts || {});
  district = district || names[0];
  const pick = h("select", { onchange: (e) => { location.hash = `#/district/${encodeURIComponent(e.target.value)}`; } },
    names.map((n) => h("option", { value: n, selected: n === district }, `${n} (${summary.districts[n]})`)));
  const kind = h("select", { onchange: () => refresh() }, h("option", { value: "" }, "every kind"),
    Object.entries(cat.kinds).map(([k, i]) => h("option", { value: k }, `${i.title} ${i.title_zh}`)));
  const canvas = h("canvas", { class: "district" });
  const note = h("p", { class: "muted" });
  const legend = h("p", { class: "legend" }, Object.entries(COLORS).map(([k, c]) => h("span", {}, h("span", { class: "dot", style: `background:${c}` }), ` ${k}`)));
  container.append(h("h1", {}, district || "no districts"), h("div", { class: "filters" }, pick, kind), legend, canvas, note);
  let hit = () => null;
  canvas.addEventListener("click", (e) => {
    const d = hit(e.offsetX, e.offsetY);
    if (d) location.hash = `#/device/${encodeURIComponent(d.device_id)}`;
  });
  async function refresh() {
    if (!district) return;
    try {
      const [{ devices, truncated }, worst] = await Promise.all([devicesOf(district, kind.value), worstAlerts(district)]);
      hit = draw(canvas, devices, worst);
      note.textContent = `${devices.length} devices with a position${truncated ? ` (the first ${MAX_DEVICES}: choose a kind)` : ""}; ${worst.size} with open alerts`;
    } catch (e) {
      showError(container, e);
    }
  }
  await refresh();
  let timer = null;
  return on("alert", (ev) => {
    if (ev.device.district !== district) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 500);
  });
}
