// Calls: the request log -- the API's filters, sort and server-side paging, all in the URL
// hash (a link opens the same page of the same calls) -- and one call with every field, its
// captured prompt and response, and links to its trace.
import { get } from "../api.js";
import { append, el, field, filterForm, hashOf, moment, money, ms, number, table } from "../dom.js";

export const FILTERS = ["start_date", "end_date", "model", "provider", "service", "project", "api_key_id", "user", "feature", "status"];
const COLUMNS = "id,created_at,service,project,provider,model,status,input_tokens,output_tokens,cost,latency_ms,api_key_id,error_message,trace_id";
const SORTS = [["created_at", "Time"], ["cost", "Cost"], ["latency", "Latency"], ["tokens", "Tokens"]];
const SIZES = ["25", "50", "100"];

export async function render(container, params, context) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params[name]]));
  const sort = SORTS.some(([value]) => value === params.sort) ? params.sort : "created_at";
  const order = params.order === "asc" ? "asc" : "desc";
  const limit = SIZES.includes(params.limit) ? params.limit : "50";
  const offset = Math.max(0, Number.parseInt(params.offset || "0", 10) || 0);
  const state = { ...filters, sort, order, limit, offset: offset || "" };
  append(container, [
    el("h2", {}, "Calls"),
    filterForm("Call filters", [
      field("start_date", "From (UTC day)", { type: "date", value: params.start_date || "" }),
      field("end_date", "To (UTC day)", { type: "date", value: params.end_date || "" }),
      field("model", "Model", { value: params.model || "" }),
      field("provider", "Provider", { value: params.provider || "" }),
      field("service", "Service", { value: params.service || "" }),
      field("project", "Project", { value: params.project || "" }),
      field("api_key_id", "API key", { value: params.api_key_id || "" }),
      field("user", "User", { value: params.user || "" }),
      field("feature", "Feature", { value: params.feature || "" }),
      field("status", "Status", { value: params.status || "", options: [["", "any"], ["success", "success"], ["error", "error"]] }),
      field("sort", "Sort by", { value: sort, options: SORTS }),
      field("order", "Order", { value: order, options: [["desc", "descending"], ["asc", "ascending"]] }),
      field("limit", "Per page", { value: limit, options: SIZES.map((s) => [s, s]) }),
    ], (values) => context.navigate(values)),
  ]);
  const detail = el("section", { id: "call", "aria-label": "Call" });
  const listing = el("div", { id: "calls-list" });
  append(container, [detail, listing]);
  const page = await get("/api/v1/calls", { ...filters, sort, order, limit, offset, select: COLUMNS });
  if (!context.current()) return;
  const total = page.pagination.total;
  const first = page.calls.length ? offset + 1 : 0;
  const last = offset + page.calls.length;
  const open = (call) => hashOf("calls", { ...state, call: call.id });
  append(listing, [
    table(`Calls ${first}–${last} of ${number(total)}`, [
      ["Time", (c) => el("a", { href: open(c), class: "open", "aria-label": `Open call ${c.id}` }, moment(c.created_at))],
      ["Service", (c) => c.service ?? ""],
      ["Project", (c) => c.project ?? ""],
      ["Model", (c) => c.model ?? ""],
      ["Status", (c) => c.status ?? ""],
      ["Tokens in/out", (c) => `${number(c.input_tokens)} / ${number(c.output_tokens)}`, "num"],
      ["Cost", (c) => money(c.cost, 6), "num"],
      ["Latency", (c) => ms(c.latency_ms), "num"],
      ["API key", (c) => c.api_key_id ?? ""],
      ["Error", (c) => c.error_message ?? "", "clip"],
    ], page.calls, { rowAttributes: (c) => ({ "data-call-id": c.id }) }),
    pager(state, offset, Number(limit), page.pagination.hasMore, context),
  ]);
  if (params.call) await showCall(detail, params.call, context, hashOf("calls", state));
}

function pager(state, offset, limit, hasMore, context) {
  const previous = el("button", { type: "button", id: "previous", disabled: offset === 0 }, "Previous page");
  const next = el("button", { type: "button", id: "next", disabled: !hasMore }, "Next page");
  previous.addEventListener("click", () => context.navigate({ ...state, offset: Math.max(0, offset - limit) || "" }));
  next.addEventListener("click", () => context.navigate({ ...state, offset: offset + limit }));
  return el("nav", { class: "pager", "aria-label": "Pages" }, previous, next);
}

async function showCall(section, id, context, back) {
  const call = await get(`/api/v1/calls/${encodeURIComponent(id)}`);
  if (!context.current()) return;
  const links = el("p", { class: "links" }, el("a", { href: back }, "Close"));
  if (call.trace_id) {
    links.append(" · ", el("a", { href: hashOf("traces", { trace: call.trace_id }) }, "Show trace here"));
    const external = traceLink(context.config.trace_url, call);
    if (external) links.append(" · ", el("a", { href: external, id: "trace-link", target: "_blank", rel: "noopener noreferrer" }, "Open trace"));
  }
  const fields = el("dl", { class: "fields" });
  for (const [name, value] of Object.entries(call)) {
    append(fields, [el("dt", {}, name), el("dd", { "data-field": name }, shown(name, value))]);
  }
  append(section, [el("h3", {}, "Call ", el("code", {}, call.id)), links, fields]);
  section.focus?.();
  if (!call.has_content) return;
  const details = await get(`/api/v1/calls/${encodeURIComponent(id)}/details`);
  if (!context.current()) return;
  append(section, [
    el("h4", {}, "Prompt"),
    el("pre", { class: "content", id: "prompt" }, pretty(details.request_prompt)),
    el("h4", {}, "Response"),
    el("pre", { class: "content", id: "response" }, pretty(details.response_preview)),
  ]);
}

function shown(name, value) {
  if (value === null || value === undefined) return "—";
  if (name.endsWith("_at")) return moment(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function pretty(text) {
  if (text === null || text === undefined) return "(not captured)";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

/** The operator's trace link (call_log_trace_url) for a call; only http(s) links are made. */
export function traceLink(template, call) {
  if (!template || !/^[0-9a-f]{32}$/.test(call.trace_id || "")) return null;
  const href = template.replaceAll("{trace_id}", call.trace_id).replaceAll("{span_id}", encodeURIComponent(call.span_id || ""));
  try {
    const url = new URL(href, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}
