// Building the DOM: every value is a text node (textContent), never markup -- model names,
// prompts and error messages come from spans and are attacker-controlled.

/** An element with attributes (static names, string values) and children (nodes or text). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** A moment in the browser's time zone, UTC on hover (the title). */
export function moment(iso) {
  if (!iso) return el("span", {}, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return el("span", {}, String(iso));
  return el("time", { datetime: date.toISOString(), title: `${date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "")} UTC` }, date.toLocaleString());
}

export function money(value, digits = 4) {
  if (value === null || value === undefined) return "unknown";
  return `$${Number(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits })}`;
}

export function number(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function percent(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(2)} %`;
}

export function ms(value) {
  return value === null || value === undefined ? "—" : `${Math.round(Number(value)).toLocaleString("en-US")} ms`;
}

/** A labelled form control; ``options`` (value, label) makes a select. */
export function field(name, label, { value = "", type = "text", options = null, list = null } = {}) {
  const id = `f-${name}`;
  const control = options
    ? el("select", { id, name }, options.map(([v, text]) => el("option", { value: v, selected: v === value }, text)))
    : el("input", { id, name, type, value, list, autocomplete: "off" });
  return el("div", { class: "field" }, el("label", { for: id }, label), control);
}

/** A table: ``columns`` of [heading, cell(row) -> node or text, class]. */
export function table(caption, columns, rows, { rowAttributes = () => ({}) } = {}) {
  return el(
    "table",
    {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, columns.map(([heading, , cls]) => el("th", { scope: "col", class: cls }, heading)))),
    el("tbody", {}, rows.map((row) => el("tr", rowAttributes(row), columns.map(([, cell, cls]) => el("td", { class: cls }, cell(row)))))),
  );
}

/** The values of a form's named controls, empty ones left out. */
export function formValues(form) {
  const values = {};
  for (const [name, value] of new FormData(form).entries()) {
    if (String(value).trim() !== "") values[name] = String(value).trim();
  }
  return values;
}

/** The URL hash of a view with its parameters (empty ones left out). */
export function hashOf(name, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const text = query.toString();
  return `#/${name}${text ? `?${text}` : ""}`;
}

/** The filters form of a view: submitting it navigates (the filters go into the URL). */
export function filterForm(label, fields, onSubmit) {
  const form = el("form", { class: "filters", "aria-label": label }, fields, el("div", { class: "field actions" }, el("button", { type: "submit" }, "Apply")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(formValues(form));
  });
  return form;
}
