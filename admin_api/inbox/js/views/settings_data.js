// The audit log (administrative actions and sign-in events, newest first, with filters and
// paging) and the organisation's data rights: export, and deletion by the super-owner.
import { paths } from "../api.js";
import { announce, busy, confirmDialog, field, h, replace } from "../dom.js";
import { fullTime } from "../format.js";
import { errorLine, sectionHead, showError, table } from "./settings.js";

export async function auditSection(root, ctx) {
  const { api, org } = ctx;
  const error = errorLine();
  const action = h("input", { class: "input compact", type: "text", placeholder: "e.g. member.role_changed", maxlength: "100" });
  const kind = h("select", { class: "input compact", aria: { label: "Log" } },
    h("option", { value: "audit" }, "Administrative actions"), h("option", { value: "auth" }, "Sign-in events"));
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary small", hidden: true }, "Older entries");
  let before = null;
  const names = new Map();
  if (ctx.ws) for (const [id, m] of ctx.ws.members) names.set(id, m.name || m.email);

  async function load(reset) {
    if (reset) { before = null; replace(tbody); }
    const q = new URLSearchParams({ limit: "50" });
    if (before) q.set("before", String(before));
    const auth = kind.value === "auth";
    if (action.value.trim()) q.set(auth ? "event" : "action", action.value.trim());
    try {
      const page = await api.get((auth ? paths.authEvents(org.id) : paths.audit(org.id)) + "?" + q);
      if (!ctx.alive()) return;
      for (const e of page.items) {
        const who = auth ? names.get(e.user_id) || e.user_id || "—" : e.actor_kind === "user" ? names.get(e.actor_id) || e.actor_id : e.actor_kind;
        tbody.append(h("tr", null,
          h("td", { text: fullTime(e.created_at) }),
          h("td", null, h("code", { text: auth ? e.event : e.action }), auth && !e.success ? h("span", { class: "pill pill-failed", text: "failed" }) : null),
          h("td", { text: who || "—" }),
          h("td", { text: auth ? "" : [e.target_type, e.target_id].filter(Boolean).join(" ") }),
          h("td", { text: e.ip || "—" }),
          h("td", null, h("code", { class: "details", text: Object.keys(e.details || {}).length ? JSON.stringify(e.details) : "" }))));
      }
      before = page.next_before;
      more.hidden = !before;
      showError(error, null);
    } catch (e) {
      showError(error, e);
    }
  }

  const form = h("form", { class: "filters-row" }, kind, h("label", { class: "inline-label" }, h("span", { text: "Action" }), action),
    h("button", { type: "submit", class: "secondary small" }, "Filter"));
  form.addEventListener("submit", (e) => { e.preventDefault(); load(true); });
  kind.addEventListener("change", () => load(true));
  more.addEventListener("click", () => busy(more, () => load(false)));
  replace(root, sectionHead("Audit log", "Every administrative action and sign-in event. Append-only."), form, error,
    h("div", { class: "table-wrap" }, h("table", { class: "table" }, h("caption", { class: "visually-hidden", text: "Audit log" }),
      h("thead", null, h("tr", null, ["When", "What", "Who", "Target", "IP", "Details"].map((t) => h("th", { scope: "col", text: t })))), tbody)),
    more);
  await load(true);
}

// A signed link valid for a few minutes, asked for when the owner clicks (the click is audited).
function downloadButton(ctx, exportId, error) {
  const b = h("button", { type: "button", class: "secondary small" }, "Download");
  b.addEventListener("click", () => busy(b, async () => {
    try {
      const link = await ctx.api.post(paths.exportLink(ctx.org.id, exportId));
      // Same server, whatever host name the page was opened with.
      const url = new URL(link.url, location.href);
      location.assign(url.pathname + url.search);
    } catch (e) {
      showError(error, e);
    }
  }));
  return b;
}

export async function dataSection(root, ctx) {
  const { api, org } = ctx;
  const perms = org.permissions || [];
  const error = errorLine();
  const reload = () => dataSection(root, ctx);
  const parts = [sectionHead("Export & deletion", "Your organisation's data belongs to you."), error];

  if (perms.includes("data.export")) {
    let exports = { items: [] };
    try {
      exports = await api.get(paths.exports(org.id));
    } catch (e) {
      if (e.status !== 404 && e.status !== 405) throw e;
      exports = null;
    }
    if (!ctx.alive()) return;
    const start = h("button", { type: "button", class: "primary" }, "Export all data");
    start.addEventListener("click", () => busy(start, async () => {
      try {
        await api.post(paths.exports(org.id));
        announce("Export started");
        reload();
      } catch (e) {
        showError(error, e);
      }
    }));
    const rows = exports ? (exports.items || []).map((x) => h("tr", null,
      h("td", { text: fullTime(x.created_at) }),
      h("td", null, h("span", { class: "pill pill-" + (x.status === "done" ? "open" : x.status === "failed" ? "failed" : "pending"), text: x.status })),
      h("td", { text: x.size_bytes ? Math.max(1, Math.round(x.size_bytes / 1024)) + " KB" : "" }),
      h("td", { class: "right" }, x.available ? downloadButton(ctx, x.id, error) : null))) : [];
    parts.push(h("div", { class: "card" }, h("h3", { text: "Export" }),
      h("p", { text: "A zip of JSON Lines files with everything the organisation owns: members, apps, contacts, conversations, messages, the audit log and more. Links expire after a few minutes; archives after 7 days." }),
      exports === null ? h("p", { class: "muted", text: "Exports are not available on this server yet." }) : start,
      rows.length ? table(["Requested", "State", "Size", ""], rows, "Exports") : null,
      rows.length ? h("button", { type: "button", class: "secondary small", onclick: reload }, "Refresh") : null));
    // An export being built: look again in a moment (stops when the page is left).
    if (exports && (exports.items || []).some((x) => x.status === "pending" || x.status === "running")) {
      setTimeout(() => { if (ctx.alive()) reload(); }, 2000);
    }
  }

  if (org.is_super_owner) {
    const scheduled = org.deletion_scheduled_at;
    const box = h("div", { class: "card danger-zone" }, h("h3", { text: "Delete the organisation" }));
    if (scheduled) {
      const restore = h("button", { type: "button", class: "primary" }, "Cancel the deletion");
      restore.addEventListener("click", () => busy(restore, async () => {
        try {
          Object.assign(org, await api.post(paths.restoreOrg(org.id)));
          announce("Deletion cancelled");
          reload();
        } catch (e) {
          showError(error, e);
        }
      }));
      box.append(h("p", { class: "alert alert-error", text: "Everything will be deleted for good on " + fullTime(scheduled) + "." }), restore);
    } else {
      const name = h("input", { class: "input", type: "text", autocomplete: "off" });
      const del = h("button", { type: "button", class: "danger" }, "Delete organisation");
      del.addEventListener("click", async () => {
        if (name.value.trim() !== org.name) return showError(error, new Error("Type the organisation's name exactly to confirm."));
        if (!(await confirmDialog("Delete " + org.name + "?", "After the grace period every conversation, contact, member and setting is deleted for good.",
                                  { confirm: "Schedule deletion", danger: true }))) return;
        busy(del, async () => {
          try {
            Object.assign(org, await api.del(paths.org(org.id)));
            reload();
          } catch (e) {
            showError(error, e);
          }
        });
      });
      box.append(h("p", { text: "Only you, its creator, can do this. It happens after a grace period during which you can cancel it." }),
        field("Type “" + org.name + "” to confirm", name), del);
    }
    parts.push(box);
  }
  replace(root, ...parts);
}
