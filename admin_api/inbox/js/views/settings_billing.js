// Settings → Billing (owners: billing.manage): the plan in force, the Stripe subscription's
// status, seats and apps used against the plan's limits, the plans on offer (Stripe Checkout)
// and the billing portal. Routes: admin_api/billing/routes.py, docs/billing.md.
// The banner every member sees while a payment failed lives in shell.js (BILLING_BANNERS).
import { busy, h, replace } from "../dom.js";
import { fullTime } from "../format.js";
import { errorLine, sectionHead, showError, table } from "./settings.js";

export const BILLING_BANNERS = {
  payment_failed: "The last payment failed. Chat keeps working; an owner can update the payment method under Settings → Billing.",
  payment_incomplete: "The subscription's first payment is not complete yet. An owner can finish it under Settings → Billing.",
};

const STATUS_LABELS = {
  none: "No subscription", active: "Active", trialing: "Trial", past_due: "Payment failed", unpaid: "Unpaid",
  incomplete: "Payment incomplete", incomplete_expired: "Expired", canceled: "Cancelled", paused: "Paused",
};

function price(value) {
  const n = Number(value);
  return n === 0 ? "Free" : new Intl.NumberFormat("en-GB", { style: "currency", currency: "USD" }).format(n) + " / month";
}

export async function billingSection(root, ctx) {
  const base = "/v1/orgs/" + ctx.org.id + "/billing";
  const data = await ctx.api.get(base);
  if (!ctx.alive()) return;
  const error = errorLine();
  // One Idempotency-Key per click: a request retried after re-authentication is the same one.
  const go = (button, path, body) => busy(button, async () => {
    try {
      const key = "click-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
      const answer = await ctx.api.post(path, body, { headers: { "Idempotency-Key": key } });
      window.location.assign(answer.url);
    } catch (e) {
      showError(error, e);
    }
  });
  const portal = h("button", { type: "button", class: "secondary" }, "Manage billing");
  portal.addEventListener("click", () => go(portal, base + "/portal"));
  const current = data.plans.find((p) => p.name === data.plan);
  const rows = data.plans.map((p) => {
    const mine = p.name === data.plan;
    let action = null;
    if (mine) action = h("span", { class: "badge badge-verified", text: "Current plan" });
    else if (p.purchasable) {
      action = h("button", { type: "button", class: "primary small", aria: { label: "Choose " + p.title } }, "Choose");
      action.addEventListener("click", () => go(action, base + "/checkout", { plan: p.name }));
    }
    return h("tr", { data: { plan: p.name } }, h("td", null, h("strong", { text: p.title })), h("td", { text: price(p.monthly_price) }),
      h("td", { text: String(p.seats) }), h("td", { text: String(p.apps) }), h("td", { class: "right" }, action));
  });
  replace(root,
    sectionHead("Billing", "Plans limit seats and apps only, never conversations or messages. Payment is handled by Stripe.", portal),
    error,
    data.banner ? h("div", { class: "alert alert-error", role: "alert", text: BILLING_BANNERS[data.banner] || data.banner }) : null,
    h("dl", { class: "shopify-status billing-summary" },
      h("dt", { text: "Plan" }), h("dd", { data: { testid: "billing-plan" }, text: current ? current.title : data.plan }),
      h("dt", { text: "Status" }), h("dd", { data: { status: data.status }, text: STATUS_LABELS[data.status] || data.status }),
      data.current_period_end ? [h("dt", { text: data.cancel_at_period_end ? "Ends" : "Renews" }), h("dd", { text: fullTime(data.current_period_end) })] : null,
      h("dt", { text: "Seats" }), h("dd", { text: `${data.seats.members + data.seats.pending_invites} of ${data.seats.limit} (${data.seats.pending_invites} pending invitations)` }),
      h("dt", { text: "Apps" }), h("dd", { text: `${data.apps.used} of ${data.apps.limit}` })),
    h("h3", { text: "Plans" }),
    table(["Plan", "Price", "Seats", "Apps", ""], rows, "Plans"));
}
