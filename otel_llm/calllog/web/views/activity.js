// Activity: cost stacked by model, requests, error rate, cache hit rate, p95 latency and time
// to first token per day (per hour for ranges of two days or less), the totals, the cost
// breakdown and the models -- one stats request (two for hours), answered from the daily
// aggregates whatever the number of calls.
import { get } from "../api.js";
import { append, el, field, filterForm, moment, money, ms, number, percent, table } from "../dom.js";

export const FILTERS = ["start_date", "end_date", "service", "project", "api_key_id", "provider", "model"];
const MODELS_PER_DAY = 8;
const COLORS = ["#2f6fb3", "#d9822b", "#3a9a5b", "#c23b4b", "#7d5ba6", "#8c6d3f", "#d36fb5", "#6b7280", "#1aa3a3"];
const DAY = 86400;

export async function render(container, params, context) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params[name]]));
  append(container, [
    el("h2", {}, "Activity"),
    filterForm("Activity filters", [
      field("start_date", "From (UTC day)", { type: "date", value: params.start_date || "" }),
      field("end_date", "To (UTC day)", { type: "date", value: params.end_date || "" }),
      field("service", "Service", { value: params.service || "" }),
      field("project", "Project", { value: params.project || "" }),
      field("api_key_id", "API key", { value: params.api_key_id || "" }),
      field("provider", "Provider", { value: params.provider || "" }),
      field("model", "Model", { value: params.model || "" }),
    ], (values) => context.navigate(values)),
  ]);
  const daily = await get("/api/v1/calls/stats", { ...filters, group_by: "day", limit: MODELS_PER_DAY });
  if (!context.current()) return;
  const start = Date.parse(daily.start) / 1000;
  const end = Date.parse(daily.end) / 1000;
  const hourly = end - start <= 2 * DAY;
  const range = el("p", { class: "range" }, "From ", moment(daily.start), " to ", moment(daily.end), hourly ? " (per hour)" : " (per day, UTC)");
  const charts = el("div", { class: "charts" });
  append(container, [range, totals(daily.stats), charts]);
  let groups = daily.groups.map((group) => ({ ...group, at: Date.parse(`${group.group}T00:00:00Z`) / 1000 }));
  let stacked = costByModel(daily.by_day.map((day) => ({ at: Date.parse(`${day.date}T00:00:00Z`) / 1000, models: day.models })));
  if (hourly) {
    const perHour = await get("/api/v1/calls/stats", { ...filters, group_by: "hour", limit: MODELS_PER_DAY });
    if (!context.current()) return;
    groups = perHour.groups.map((group) => ({ ...group, at: Date.parse(group.group) / 1000 }));
    stacked = costByModel(groups);
  }
  drawCharts(charts, groups, stacked);
  append(container, [breakdown(daily.stats), models(daily.by_model, daily.stats.total_cost)]);
}

const TOTALS = [
  ["total_requests", "Requests", (v) => number(v)],
  ["total_cost", "Cost", (v) => money(v)],
  ["error_rate", "Error rate", percent],
  ["cache_hit_rate", "Cache hit rate", percent],
  ["p95_latency_ms", "p95 latency", ms],
  ["p95_time_to_first_chunk_ms", "p95 time to first token", ms],
  ["total_tokens", "Tokens", (v) => number(v)],
  ["unpriced_requests", "Unpriced calls", (v) => number(v)],
];

function totals(stats) {
  return el(
    "dl",
    { class: "totals", "aria-label": "Totals" },
    TOTALS.map(([name, label, format]) =>
      el("div", { class: "total" }, el("dt", {}, label), el("dd", { "data-total": name, "data-value": stats[name] ?? "" }, format(stats[name]))),
    ),
  );
}

/** Each period's (a day's or an hour's: `at`, `models`) cost by model, one series a model. */
function costByModel(periods) {
  const names = [];
  for (const period of periods) for (const entry of period.models) if (!names.includes(entry.model)) names.push(entry.model);
  return {
    x: periods.map((period) => period.at),
    series: names.map((name) => ({
      label: name,
      values: periods.map((period) => (period.models.find((entry) => entry.model === name) || { cost: 0 }).cost || 0),
    })),
  };
}

function drawCharts(charts, groups, stacked) {
  const x = groups.map((group) => group.at);
  const series = (name) => groups.map((group) => group[name]);
  chart(charts, "Cost by model (USD)", stacked.x, stack(stacked.series), { money: true });
  chart(charts, "Requests", x, [{ label: "requests", values: series("total_requests") }]);
  chart(charts, "Error rate (%)", x, [{ label: "error rate", values: series("error_rate") }]);
  chart(charts, "Cache hit rate (%)", x, [{ label: "cache hit rate", values: series("cache_hit_rate") }]);
  chart(charts, "p95 latency and time to first token (ms)", x, [
    { label: "p95 latency", values: series("p95_latency_ms") },
    { label: "p95 time to first token", values: series("p95_time_to_first_chunk_ms") },
  ], { lines: true });
}

/** Cumulative sums, the largest first: each drawn filled over the next gives the stack. */
function stack(list) {
  let running = null;
  const sums = list.map((entry) => {
    running = entry.values.map((value, i) => (running ? running[i] : 0) + (value || 0));
    return { ...entry, values: running, stacked: true };
  });
  return sums.reverse();
}

function chart(parent, title, x, list, { money: isMoney = false, lines = false } = {}) {
  const figure = el("figure", { class: "chart" }, el("figcaption", {}, title));
  parent.append(figure);
  const width = Math.max(240, figure.clientWidth || 300);
  const colors = list.map((_, i) => COLORS[(list.length - 1 - i) % COLORS.length]);
  const options = {
    width,
    height: 200,
    scales: { x: { time: true } },
    series: [
      {},
      ...list.map((entry, i) => ({
        label: entry.label,
        stroke: colors[i],
        fill: lines ? undefined : `${colors[i]}${entry.stacked ? "cc" : "33"}`,
        width: 1.5,
        value: (_, v) => (v === null || v === undefined ? "—" : isMoney ? `$${v.toFixed(4)}` : v.toFixed(2)),
      })),
    ],
    axes: [{}, { size: 60 }],
  };
  // uPlot writes its own legend and canvas; the labels it shows are the series' labels, set as
  // text by uPlot (model names included: it uses textContent).
  new window.uPlot(options, [x, ...list.map((entry) => entry.values)], figure);
  if (performance.getEntriesByName("otel-llm:first-chart").length === 0) performance.mark("otel-llm:first-chart");
}

function breakdown(stats) {
  const parts = stats.cost_breakdown || {};
  const rows = [
    ["Input", money(parts.input)],
    ["Output", money(parts.output)],
    ["Cache read", money(parts.cache_read)],
    ["Cache write", money(parts.cache_write)],
    ["Per request", money(parts.request)],
    ["Credits (provider-billed): requests / cost", `${number(stats.credits_requests)} / ${money(stats.credits_cost)}`],
    ["Own keys: requests / cost", `${number(stats.own_key_requests)} / ${money(stats.own_key_cost)}`],
    ["Discount savings", money(stats.discount_savings)],
    ["Own-key savings vs list", money(stats.own_key_savings)],
  ];
  return table("Cost breakdown", [["Part", (r) => r[0]], ["Amount", (r) => r[1], "num"]], rows);
}

function models(byModel, total) {
  return table(
    "Models",
    [
      ["Model", (m) => m.model],
      ["Requests", (m) => number(m.requests), "num"],
      ["Tokens", (m) => number(m.tokens), "num"],
      ["Cost", (m) => money(m.cost), "num"],
      ["Share of cost", (m) => (total ? percent((100 * (m.cost || 0)) / total) : "—"), "num"],
    ],
    byModel,
  );
}
