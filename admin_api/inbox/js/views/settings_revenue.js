// Settings → Shopify (owners): connect the Partner organisation (validated at once by the API
// with a real query), the masked token, sync status, progress and last result, "sync now" and
// disconnect. Routes: admin_api/shopify.py, docs/revenue.md.
import { announce, busy, confirmDialog, field, fieldError, h, replace } from "../dom.js";
import { fullTime } from "../format.js";
import { errorLine, sectionHead, showError } from "./settings.js";

const STATUS_LABELS = { active: "Connected", syncing: "Syncing…", stopped: "Stopped after repeated failures" };

export async function shopifySection(root, ctx) {
  const path = "/v1/orgs/" + ctx.org.id + "/shopify";
  const conn = await ctx.api.get(path);
  if (!ctx.alive()) return;
  const reload = () => shopifySection(root, ctx);
  const error = errorLine();
  if (!conn.connected) {
    replace(root, sectionHead("Shopify", "Connect your Shopify Partner organisation so agents with the Revenue permission see what each merchant is worth, and the revenue dashboard fills."),
      error, connectForm(ctx, path, error, reload, null));
    return;
  }
  const syncNow = h("button", { type: "button", class: "primary" }, "Sync now");
  syncNow.addEventListener("click", () => busy(syncNow, async () => {
    try {
      await ctx.api.post(path + "/sync");
      announce("Sync requested");
      reload();
    } catch (e) {
      showError(error, e);
    }
  }));
  const disconnect = h("button", { type: "button", class: "danger-quiet" }, "Disconnect");
  disconnect.addEventListener("click", async () => {
    const ok = await confirmDialog("Disconnect Shopify?", "The Partner API token is deleted. Revenue already copied stays; reconnecting the same Partner organisation resumes from there.",
                                   { confirm: "Disconnect", danger: true });
    if (!ok) return;
    try {
      await ctx.api.del(path);
      announce("Shopify disconnected");
      reload();
    } catch (e) {
      showError(error, e);
    }
  });
  const result = conn.last_result || null;
  const progress = conn.progress || null;
  const rows = [
    ["Status", h("span", { class: ["badge", conn.status === "stopped" ? "badge-error" : "badge-verified"], data: { status: conn.status } }, STATUS_LABELS[conn.status] || conn.status)],
    ["Partner organisation", conn.partner_org_id],
    ["Token", h("code", { class: "shopify-token", text: conn.token })],
    ["Last sync", conn.last_sync_at ? fullTime(conn.last_sync_at) : "Not yet"],
    ["Next sync", conn.status === "stopped" ? "Only after Sync now" : conn.next_sync_at ? fullTime(conn.next_sync_at) : "Soon"],
    ["Failures in a row", String(conn.consecutive_failures)],
  ];
  if (progress && progress.running) rows.push(["Progress", "Reading " + (progress.feed || "…") + ", page " + (progress.pages || 0)]);
  if (result) {
    rows.push(["Last result", result.ok
      ? `${result.new_transactions || 0} new transactions, ${result.new_events || 0} new events, ${result.merchants_updated || 0} merchants updated, ${result.apps || 0} apps`
      : "Failed"]);
  }
  replace(root,
    sectionHead("Shopify", "Revenue is read from your Partner organisation every 15 minutes.", syncNow, disconnect),
    error,
    conn.last_error ? h("div", { class: ["alert", conn.status === "stopped" ? "alert-error" : "alert-warning"], role: "alert", data: { testid: "shopify-error" } },
      (conn.status === "stopped" ? "Syncing stopped after " + conn.consecutive_failures + " failures in a row. Fix the cause, then press Sync now. " : "The last sync failed. ") + conn.last_error) : null,
    h("dl", { class: "shopify-status" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)])),
    conn.apps && conn.apps.length ? [h("h3", { text: "Apps" }), h("ul", { class: "plain-list" }, conn.apps.map((a) => h("li", { text: a.name })))] : null,
    h("h3", { text: "Replace the token" }),
    connectForm(ctx, path, error, reload, conn.partner_org_id));
}

function connectForm(ctx, path, error, reload, partnerOrgId) {
  const org = h("input", { class: "input", name: "partner_org_id", inputmode: "numeric", autocomplete: "off", required: true, value: partnerOrgId || "" });
  const token = h("input", { class: "input", name: "token", type: "password", autocomplete: "off", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, partnerOrgId ? "Reconnect" : "Connect");
  const form = h("form", { class: "stack narrow", novalidate: true },
    field("Partner organisation id", org, "The number in your Partner Dashboard address."),
    field("Partner API token", token, "A Partner API client with the View financials permission. Stored encrypted and never shown again."),
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    fieldError(org, "");
    fieldError(token, "");
    showError(error, null);
    if (!/^[0-9]+$/.test(org.value.trim())) return fieldError(org, "Enter the number from your Partner Dashboard address.");
    if (token.value.length < 8) return fieldError(token, "Paste the whole token.");
    busy(submit, async () => {
      try {
        await ctx.api.put(path, { partner_org_id: org.value.trim(), token: token.value });
        token.value = "";
        announce("Shopify connected");
        reload();
      } catch (err) {
        token.value = "";
        if (err.field === "partner_org_id") fieldError(org, err.message);
        else if (err.field === "token") fieldError(token, err.message);
        else showError(error, err);
      }
    });
  });
  return form;
}
