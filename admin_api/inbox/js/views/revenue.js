// Revenue dashboard (members with the Revenue permission): MRR, ARR, active merchants, new and
// churned MRR, ARPU per range, overall or per Shopify app, and the MRR chart drawn as SVG with
// DOM APIs. The figures are the API's (GET /v1/orgs/{org}/revenue, docs/revenue.md): this page
// only formats them, it never recomputes one.
import { h, replace } from "../dom.js";

export const RANGES = [
  ["yesterday", "Yesterday"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
  ["90d", "Last 90 days"],
  ["12m", "Last 12 months"],
];

// Pure helpers (no DOM): what the page shows for a dashboard, a scope and a range.

export function money(value, currency) {
  const n = Number(value);
  try {
    return new Intl.NumberFormat("en-GB", { style: "currency", currency, minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n);
  } catch (e) {
    return n.toFixed(2) + " " + currency;
  }
}

export function metricsFor(data, scope, range) {
  const source = scope === "overall" ? data.overall : (data.apps || {})[scope];
  return (source && source[range]) || null;
}

// [{at, value}] of one currency's MRR, and the axis bounds (0 .. a rounded maximum).
export function chartPoints(metrics, currency) {
  const points = (metrics.series || []).map((p) => ({ at: p.at, value: Number((p.mrr || {})[currency] || 0) }));
  const max = points.reduce((m, p) => Math.max(m, p.value), 0);
  return { points, top: niceCeil(max) };
}

function niceCeil(v) {
  if (v <= 0) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(v)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * mag >= v) return step * mag;
  return 10 * mag;
}

function day(iso, withTime) {
  const d = new Date(iso);
  const opts = withTime ? { hour: "2-digit", minute: "2-digit", timeZone: "UTC" } : { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" };
  return new Intl.DateTimeFormat("en-GB", opts).format(d);
}

// --- the chart --------------------------------------------------------------------------------------

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return el;
}

export function mrrChart(metrics, currency, hourly) {
  const { points, top } = chartPoints(metrics, currency);
  const W = 720, H = 260, L = 78, R = 16, T = 14, B = 34;
  const x = (i) => L + (points.length > 1 ? (i * (W - L - R)) / (points.length - 1) : (W - L - R) / 2);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const first = points[0], last = points[points.length - 1];
  const summary = points.length
    ? "MRR in " + currency + " from " + money(first.value, currency) + " on " + day(first.at, hourly) + " to " + money(last.value, currency) +
      " on " + day(last.at, hourly) + ", highest " + money(Math.max(...points.map((p) => p.value)), currency)
    : "No MRR data in this range";
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "revenue-chart", role: "img", "aria-label": summary, "data-points": points.length });
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    svg.appendChild(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "chart-grid" }));
    svg.appendChild(s("text", { x: L - 8, y: y(v) + 4, "text-anchor": "end", class: "chart-label chart-y" }, money(v, currency)));
  }
  if (points.length) {
    svg.appendChild(s("text", { x: L, y: H - 10, "text-anchor": "start", class: "chart-label chart-x" }, day(first.at, hourly)));
    svg.appendChild(s("text", { x: W - R, y: H - 10, "text-anchor": "end", class: "chart-label chart-x" }, day(last.at, hourly)));
    const d = points.map((p, i) => (i ? "L" : "M") + x(i).toFixed(1) + " " + y(p.value).toFixed(1)).join(" ");
    svg.appendChild(s("path", { d: d + ` L${x(points.length - 1).toFixed(1)} ${y(0)} L${x(0).toFixed(1)} ${y(0)} Z`, class: "chart-area" }));
    svg.appendChild(s("path", { d, class: "chart-line" }));
  }
  // The same data as a table for screen readers and for copying.
  const table = h("table", { class: "table visually-hidden" },
    h("caption", { text: "MRR (" + currency + ") per " + (hourly ? "hour" : "day") }),
    h("thead", null, h("tr", null, h("th", { scope: "col", text: "Date" }), h("th", { scope: "col", text: "MRR" }))),
    h("tbody", null, points.map((p) => h("tr", null, h("td", { text: day(p.at, hourly) }), h("td", { text: money(p.value, currency) })))));
  return h("figure", { class: "revenue-figure" }, svg, h("figcaption", { class: "hint", text: summary }), table);
}

// --- the page ---------------------------------------------------------------------------------------

export async function revenueSection(root, ctx) {
  const data = await ctx.api.get("/v1/orgs/" + ctx.org.id + "/revenue");
  if (!ctx.alive()) return;
  const state = { scope: "overall", range: "30d" };
  const names = data.app_names || {};
  const scope = h("select", { class: "input compact", aria: { label: "App" } },
    h("option", { value: "overall" }, "All apps"),
    Object.keys(data.apps || {}).map((gid) => h("option", { value: gid }, names[gid] || gid)));
  const range = h("select", { class: "input compact", aria: { label: "Period" } },
    RANGES.map(([id, label]) => h("option", { value: id, selected: id === state.range }, label)));
  const body = h("div", { class: "revenue-body" });
  const draw = () => {
    state.scope = scope.value;
    state.range = range.value;
    const m = metricsFor(data, state.scope, state.range);
    replace(body, m ? figures(m, state.range) : h("p", { class: "muted", text: "No revenue data for this app yet." }));
  };
  scope.addEventListener("change", draw);
  range.addEventListener("change", draw);
  const head = h("header", { class: "section-head" },
    h("div", null, h("h2", { text: "Revenue" }),
      h("p", { class: "lead", text: "From your Shopify Partner organisation. MRR counts active merchants with a paid plan, normalised to 30 days." })),
    h("div", { class: "section-actions" }, scope, range));
  replace(root, head, body);
  draw();
}

function figures(m, range) {
  const currencies = Object.keys(m.currencies || {});
  const counts = h("div", { class: "revenue-cards" },
    card("Active merchants", String(m.active_merchants), m.active_merchants, "active_merchants", "Active or trialing at the end of the period; " + m.trialing_merchants + " trialing"));
  if (!currencies.length) {
    return [counts, h("p", { class: "muted", text: "No paying merchants in this period." })];
  }
  return [counts, currencies.map((c) => {
    const x = m.currencies[c];
    return h("section", { class: "revenue-currency", data: { currency: c }, aria: { label: "Figures in " + c } },
      currencies.length > 1 ? h("h3", { text: c }) : null,
      h("div", { class: "revenue-cards" },
        card("MRR", money(x.mrr, c), x.mrr, "mrr", "Started at " + money(x.mrr_start, c)),
        card("ARR", money(x.arr, c), x.arr, "arr", "MRR × 12"),
        card("New MRR", money(x.new_mrr, c), x.new_mrr, "new_mrr", "Reactivation " + money(x.reactivation_mrr, c) + ", expansion " + money(x.expansion_mrr, c)),
        card("Churned MRR", money(x.churned_mrr, c), x.churned_mrr, "churned_mrr", "Contraction " + money(x.contraction_mrr, c)),
        card("ARPU", money(x.arpu, c), x.arpu, "arpu", x.paying_merchants + " paying merchants")),
      mrrChart(m, c, range === "yesterday"));
  })];
}

function card(label, text, raw, key, hint) {
  return h("div", { class: "revenue-card", data: { metric: key, value: raw } },
    h("p", { class: "revenue-card-label", text: label }),
    h("p", { class: "revenue-card-value", text }),
    h("p", { class: "hint", text: hint }));
}
