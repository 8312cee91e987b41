// History routing under /app/: every route is a real URL (the server answers index.html for
// all of them). parse() and href() are pure; Router wires them to the History API.

export const BASE = "/app/";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

// Public pages (no session needed) are marked `public`.
const ROUTES = [
  { name: "inbox", re: /^$/ },
  { name: "inbox", re: /^inbox\/(mine|unassigned|all)$/, keys: ["view"] },
  { name: "conversation", re: new RegExp("^c/(" + UUID + ")$"), keys: ["id"] },
  { name: "settings", re: /^settings$/ },
  { name: "settings", re: /^settings\/(team|apps|api-keys|webhooks|revenue|shopify|billing|security|audit|data|notifications)$/, keys: ["section"] },
  { name: "settings", re: new RegExp("^settings/(apps|webhooks)/(" + UUID + ")$"), keys: ["section", "id"] },
  { name: "welcome", re: /^welcome$/ },
  { name: "login", re: /^login$/, public: true },
  { name: "signup", re: /^signup$/, public: true },
  { name: "forgot-password", re: /^forgot-password$/, public: true },
  { name: "reset-password", re: /^reset-password$/, public: true },
  { name: "verify-email", re: /^verify-email$/, public: true },
  { name: "accept-invite", re: /^accept-invite$/, public: true },
  { name: "confirm-email", re: /^confirm-email$/ },
];

// "/app/c/<id>" -> {name: "conversation", params: {id}, public: false}; unknown -> not_found.
export function parse(pathname) {
  let path = String(pathname || "");
  if (path.startsWith(BASE)) path = path.slice(BASE.length);
  else if (path === "/app") path = "";
  path = path.replace(/\/+$/, "");
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (!m) continue;
    const params = {};
    (r.keys || []).forEach((k, i) => { params[k] = m[i + 1]; });
    return { name: r.name, params, public: !!r.public };
  }
  return { name: "not_found", params: {}, public: true };
}

export function href(name, params = {}) {
  switch (name) {
    case "inbox": return BASE + (params.view ? "inbox/" + params.view : "");
    case "conversation": return BASE + "c/" + params.id;
    case "settings": return BASE + "settings" + (params.section ? "/" + params.section : "") + (params.id ? "/" + params.id : "");
    default: return BASE + name;
  }
}

// The token of a mailed link (#token=...): read once, then removed from the address bar so it
// is neither bookmarked nor left in history.
export function takeFragmentToken(location, history) {
  const m = /(?:^#|&)token=([A-Za-z0-9_-]{1,200})/.exec(location.hash || "");
  if (!m) return null;
  history.replaceState(history.state, "", location.pathname);
  return m[1];
}

export class Router {
  constructor(onChange) {
    this.onChange = onChange;
    this.current = parse(location.pathname);
    window.addEventListener("popstate", () => this._changed());
    // Same-origin links inside the app navigate without a page load.
    document.addEventListener("click", (e) => {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      const a = e.target.closest && e.target.closest("a[href]");
      if (!a || a.target || a.hasAttribute("download")) return;
      const url = new URL(a.href, location.href);
      if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
      e.preventDefault();
      this.go(url.pathname + url.hash);
    });
  }

  go(path, { replace = false } = {}) {
    if (path === location.pathname + location.hash && !replace) return;
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    this._changed();
  }

  _changed() {
    this.current = parse(location.pathname);
    this.onChange(this.current);
  }
}
