// Who is logged in (from GET /api/v1/whoami) and the page's event bus: the live stream's events
// ("alert", "tiles", "resync") are dispatched on `bus` as CustomEvents for the open view.

export const session = {
  name: null,
  role: null, // viewer, operator, admin; null when the API does not say (then the API decides)
  districts: null, // null: every district
  canAct() { return this.role !== "viewer"; },
  isAdmin() { return this.role === null || this.role === "admin"; },
};

export const bus = new EventTarget();

// bus.addEventListener with a remover, for a view's cleanup
export function on(name, handler) {
  const f = (e) => handler(e.detail);
  bus.addEventListener(name, f);
  return () => bus.removeEventListener(name, f);
}

let catalogue = null;
export async function getCatalogue() {
  if (!catalogue) catalogue = fetch("/board/catalogue.json").then((r) => r.json());
  return catalogue;
}
