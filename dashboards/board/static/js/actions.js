// What an operator can do to an alert: acknowledge (with a note), silence (duration, reason),
// resolve by hand, assign to a responsible unit, comment. A viewer gets no buttons (the API
// refuses the calls anyway).
import { api } from "./api.js";
import { session } from "./session.js";
import { ask, h } from "./ui.js";

const DURATIONS = { "1 hour": 3600e3, "4 hours": 4 * 3600e3, "8 hours": 8 * 3600e3, "1 day": 86400e3, "7 days": 7 * 86400e3 };
const path = (a, what) => `/api/v1/alerts/${encodeURIComponent(a.id)}/${what}`;

const ACTIONS = [
  { name: "ack", label: "Acknowledge", when: (a) => a.state === "firing",
    fields: [{ name: "note", label: "Note (what you are doing about it)" }],
    run: (a, v) => api(path(a, "ack"), { method: "POST", body: { note: v.note } }) },
  { name: "unack", label: "Un-acknowledge", when: (a) => a.state === "acknowledged",
    run: (a) => api(path(a, "unack"), { method: "POST", body: {} }) },
  { name: "silence", label: "Silence", when: (a) => a.state !== "resolved",
    fields: [{ name: "duration", label: "For", options: Object.keys(DURATIONS), value: "4 hours" },
      { name: "reason", label: "Reason", required: true }],
    run: (a, v) => api("/api/v1/silences", { method: "POST",
      body: { matchers: { rule: a.rule, device: a.device_id }, end: Date.now() + DURATIONS[v.duration], reason: v.reason } }) },
  { name: "resolve", label: "Resolve", when: (a) => a.state === "firing" || a.state === "acknowledged",
    fields: [{ name: "note", label: "Note (why it is over)" }],
    run: (a, v) => api(path(a, "resolve"), { method: "POST", body: { note: v.note } }) },
  { name: "assign", label: "Assign", when: (a) => a.state !== "resolved",
    fields: [{ name: "unit", label: "Responsible unit", required: true }],
    defaults: (a) => ({ unit: a.assignee || a.device?.responsible_unit || "" }),
    run: (a, v) => api(path(a, "assign"), { method: "POST", body: { unit: v.unit } }) },
  { name: "comment", label: "Comment", when: () => true,
    fields: [{ name: "text", label: "Comment", required: true }],
    run: (a, v) => api(path(a, "comments"), { method: "POST", body: { text: v.text } }) },
];

async function perform(action, alert, after, report) {
  let values = {};
  if (action.fields) {
    const defaults = action.defaults ? action.defaults(alert) : {};
    values = await ask(`${action.label} ${alert.id}`, action.fields.map((f) => ({ ...f, value: defaults[f.name] ?? f.value })),
      action.label);
    if (values === null) return;
  }
  try {
    await action.run(alert, values);
    after();
  } catch (e) {
    report(e);
  }
}

// The buttons for `alert` (none for a viewer); `after()` runs after a successful action.
export function actionButtons(alert, after, { only = null } = {}) {
  if (!session.canAct()) return h("span", { class: "actions" });
  const box = h("span", { class: "actions" });
  const report = (e) => box.append(h("span", { class: "error" }, ` ${e.message}`));
  for (const a of ACTIONS) {
    if ((only && !only.includes(a.name)) || !a.when(alert)) continue;
    box.append(h("button", { class: `act-${a.name}`, onclick: () => perform(a, alert, after, report) }, a.label));
  }
  return box;
}
