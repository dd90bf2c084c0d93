// The page's shell: the key, the router (the view and its filters live in the URL hash, so a
// link opens the same view with the same filters) and the messages. A view is one module under
// views/ exporting ``render(container, params, context)``.
import { ApiError, config, forgetKey, getKey, setKey } from "./api.js";
import { clear, hashOf } from "./dom.js";
import * as activity from "./views/activity.js";
import * as budgets from "./views/budgets.js";
import * as calls from "./views/calls.js";
import * as traces from "./views/traces.js";

const VIEWS = { activity, calls, traces, budgets };
const view = document.getElementById("view");
const login = document.getElementById("login");
const message = document.getElementById("message");
const forget = document.getElementById("forget");
const settings = config().catch(() => ({ trace_url: null }));
let rendering = 0;

/** The view and its parameters of a hash such as ``#/calls?model=gpt-4o&sort=cost``. */
export function parseHash(hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const name = Object.hasOwn(VIEWS, path) ? path : "activity";
  return { name, params: Object.fromEntries(new URLSearchParams(query)) };
}

function showMessage(text, kind = "error") {
  message.textContent = text;
  message.className = kind;
  message.hidden = !text;
}

function showLogin(text) {
  view.hidden = true;
  forget.hidden = true;
  login.hidden = false;
  if (text) showMessage(text);
  document.getElementById("key").focus();
}

async function route() {
  if (!getKey()) {
    showLogin("");
    return;
  }
  login.hidden = true;
  view.hidden = false;
  forget.hidden = false;
  const { name, params } = parseHash(window.location.hash);
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const mine = ++rendering;
  const context = {
    config: await settings,
    navigate: (next, nextName = name) => {
      window.location.hash = hashOf(nextName, next);
    },
    current: () => rendering === mine,
    fail,
  };
  showMessage("");
  clear(view);
  view.dataset.view = name;
  view.dataset.state = "loading";
  try {
    await VIEWS[name].render(view, params, context);
    if (rendering === mine) view.dataset.state = "ready";
  } catch (error) {
    fail(error);
  }
}

function fail(error) {
  view.dataset.state = "failed";
  if (error instanceof ApiError && error.status === 401) {
    forgetKey();
    showLogin(error.message);
    return;
  }
  showMessage(error instanceof ApiError ? error.message : `The page failed: ${error.message}`);
}

login.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key");
  if (!input.value) return;
  setKey(input.value);
  input.value = "";
  route();
});

forget.addEventListener("click", () => {
  forgetKey();
  clear(view);
  showMessage("");
  showLogin("");
});

window.addEventListener("hashchange", route);
route();
