// The board's entry: log in with a token, open the live stream, route to the views.
import { api, ApiError, stream, token } from "./api.js";
import { bus, getCatalogue, session } from "./session.js";
import { setZone, showError } from "./ui.js";

const VIEWS = {
  alerts: () => import("./alerts.js"),
  alert: () => import("./alert.js"),
  tiles: () => import("./tiles.js"),
  district: () => import("./district.js"),
  device: () => import("./device.js"),
  silences: () => import("./silences.js"),
  maintenance: () => import("./silences.js").then((m) => ({ render: m.renderMaintenance })),
  quarantine: () => import("./records.js").then((m) => ({ render: m.renderQuarantine })),
  deliveries: () => import("./records.js").then((m) => ({ render: m.renderDeliveries })),
  received: () => import("./records.js").then((m) => ({ render: m.renderReceived })),
};

const $ = (id) => document.getElementById(id);
let cleanup = null;
let streamAbort = null;

// "/alerts/ID" (where webhooks link) or "#/view/arg"
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  if (hash) {
    const [view, ...rest] = hash.split("/");
    return { view: VIEWS[view] ? view : "alerts", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
  }
  const m = location.pathname.match(/^\/alerts\/([^/]+)$/);
  if (m) return { view: "alert", arg: decodeURIComponent(m[1]) };
  return { view: "alerts", arg: null };
}

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const { view, arg } = route();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  const container = $("view");
  container.replaceChildren();
  container.dataset.view = view;
  try {
    const mod = await VIEWS[view]();
    cleanup = (await mod.render(container, arg)) || null;
  } catch (e) {
    showError(container, e);
  }
}

async function whoami() {
  try {
    Object.assign(session, await api("/api/v1/whoami"));
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    // an API without /whoami: the token is checked by a cheap call, the API decides the rest
    await api("/api/v1/alerts", { params: { limit: 1 } });
    Object.assign(session, { name: null, role: null, districts: null });
  }
}

function openStream() {
  streamAbort = new AbortController();
  const dot = $("live");
  stream("/api/v1/stream", (name, data) => bus.dispatchEvent(new CustomEvent(name, { detail: data })), {
    signal: streamAbort.signal,
    onState: (up) => { dot.classList.toggle("on", up); dot.title = up ? "live" : "reconnecting"; },
  });
}

async function start() {
  setZone((await getCatalogue()).timezone);
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  const scope = session.districts ? ` · ${session.districts.join(", ")}` : "";
  $("who").textContent = session.role ? `${session.name} (${session.role}${scope})` : "";
  document.body.dataset.role = session.role || "";
  openStream();
  // citywatch up's webhook receiver: its log has a view where it runs
  api("/api/v1/demo/webhooks", { params: { limit: 1 } }).then(() => { $("nav-received").hidden = false; }, () => {});
  window.addEventListener("hashchange", show);
  await show();
}

function askToken(message = "") {
  $("login").hidden = false;
  $("nav").hidden = true;
  $("login-error").textContent = message;
  $("token").focus();
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  token.set($("token").value.trim());
  try {
    await whoami();
  } catch (err) {
    token.clear();
    return askToken(err.status === 401 ? "This token is not accepted." : err.message);
  }
  $("token").value = "";
  await start();
});

$("logout").addEventListener("click", () => {
  token.clear();
  if (streamAbort) streamAbort.abort();
  location.href = "/";
});

(async () => {
  if (!token.get()) return askToken();
  try {
    await whoami();
  } catch (err) {
    token.clear();
    return askToken(err.status === 401 ? "Your token is no longer accepted: log in again." : err.message);
  }
  await start();
})();
