// Budgets: the collector's policies and each budget's spend in its window (/api/v1/policies).
import { ApiError, get } from "../api.js";
import { append, el, moment, money, number, table } from "../dom.js";

export async function render(container, params, context) {
  append(container, [el("h2", {}, "Budgets")]);
  let answer;
  try {
    answer = await get("/api/v1/policies");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    append(container, [el("p", {}, "No budgets or policies are configured (otel-llm collector --policies).")]);
    return;
  }
  if (!context.current()) return;
  if (!answer.policies.length) append(container, [el("p", {}, "The policy file has no policy this key may see.")]);
  for (const policy of answer.policies) {
    append(container, [
      el("h3", {}, policy.name, " ", el("span", { class: `state ${policy.state}` }, policy.state), policy.blocked ? el("span", { class: "error" }, " blocking") : null),
      el("p", { class: "scope" }, `scope: ${scope(policy.scope)}; action: ${policy.action}`),
      table(`Budgets of ${policy.name}`, [
        ["Budget", (b) => b.name],
        ["Window", (b) => b.window],
        ["State", (b) => b.state],
        ["Spent", (b) => (b.limit_usd !== null ? `${money(b.spent_usd)} of ${money(b.limit_usd)}` : `${number(b.spent_tokens)} of ${number(b.limit_tokens)} tokens`), "num"],
        ["Calls", (b) => number(b.calls), "num"],
        ["Resets", (b) => moment(b.resets_at)],
      ], policy.budgets),
    ]);
  }
}

/** A policy's scope: ``*`` or its fields' patterns, e.g. ``project: alpha, beta``. */
function scope(value) {
  if (typeof value === "string") return value;
  return Object.entries(value || {})
    .map(([name, patterns]) => `${name}: ${Array.isArray(patterns) ? patterns.join(", ") : JSON.stringify(patterns)}`)
    .join("; ");
}
