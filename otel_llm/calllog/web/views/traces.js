// Traces: the traces with LLM calls (newest first, paged by the server) and one trace as a
// tree of its agents, tools and calls, each subtree's cost beside it.
import { get } from "../api.js";
import { append, el, field, filterForm, hashOf, moment, money, number, table } from "../dom.js";

const LIMIT = 50;

export async function render(container, params, context) {
  append(container, [el("h2", {}, "Traces")]);
  if (params.trace) {
    await showTrace(container, params.trace, context);
    return;
  }
  const offset = Math.max(0, Number.parseInt(params.offset || "0", 10) || 0);
  const filters = { service: params.service, project: params.project, model: params.model };
  append(container, [
    filterForm("Trace filters", [
      field("service", "Service", { value: params.service || "" }),
      field("project", "Project", { value: params.project || "" }),
      field("model", "Model", { value: params.model || "" }),
    ], (values) => context.navigate(values)),
  ]);
  const answer = await get("/api/v1/traces", { ...filters, limit: LIMIT, offset });
  if (!context.current()) return;
  const rows = answer.data;
  append(container, [
    table(`Traces ${rows.length ? offset + 1 : 0}–${offset + rows.length} of ${number(answer.pagination.total)}`, [
      ["Trace", (t) => el("a", { href: hashOf("traces", { trace: t.trace_id }) }, t.root_span_name || t.trace_id)],
      ["First call", (t) => moment(t.first_call_at)],
      ["Services", (t) => (t.services || []).join(", ")],
      ["Agents", (t) => (t.agents || []).join(", ")],
      ["Calls", (t) => number(t.calls), "num"],
      ["Errors", (t) => number(t.errors), "num"],
      ["Cost", (t) => money(t.total_cost, 6), "num"],
    ], rows),
  ]);
  const nav = el("nav", { class: "pager", "aria-label": "Pages" });
  if (offset > 0) nav.append(el("a", { href: hashOf("traces", { ...filters, offset: Math.max(0, offset - LIMIT) || "" }) }, "Previous page"), " ");
  if (answer.has_more) nav.append(el("a", { href: hashOf("traces", { ...filters, offset: offset + LIMIT }) }, "Next page"));
  container.append(nav);
}

async function showTrace(container, traceId, context) {
  const trace = await get(`/api/v1/traces/${encodeURIComponent(traceId)}`);
  if (!context.current()) return;
  append(container, [
    el("p", { class: "links" }, el("a", { href: "#/traces" }, "All traces")),
    el("h3", {}, trace.root_span_name || "trace", " ", el("code", {}, trace.trace_id)),
    el("p", {}, `${number(trace.calls)} calls, ${number(trace.errors)} errors, ${money(trace.total_cost, 6)}`, trace.truncated ? " (tree truncated)" : ""),
    // Nested lists (not role=tree: its arrow-key contract is not implemented; links are tabbable).
    el("ul", { class: "tree", "aria-label": "Spans" }, trace.tree.map(node)),
  ]);
}

function node(item) {
  const label = [el("span", { class: `kind ${item.kind === "llm_call" ? "call" : "span"}` }, item.kind), " ", item.name || "", " "];
  if (item.call_id) label[2] = el("a", { href: hashOf("calls", { call: item.call_id }) }, item.name || item.call_id);
  const entry = el(
    "li",
    {},
    el("span", { class: "node" }, label, item.status === "error" ? el("span", { class: "error" }, "error ") : null, moment(item.started_at), " ", money(item.subtree_cost, 6)),
  );
  if (item.children.length) entry.append(el("ul", {}, item.children.map(node)));
  return entry;
}
