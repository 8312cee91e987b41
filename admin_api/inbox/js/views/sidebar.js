// The contact sidebar: who the customer is (and whether that is proven), their custom data,
// the conversation's details, and the merchant panel slot (Shopify revenue) shown only to
// members with the Revenue permission. docs/inbox.md documents the panel hook.
import { ApiError, paths } from "../api.js";
import { announce, avatar, confirmDialog, h, icon, replace } from "../dom.js";
import { contactName, fullTime, hueOf, initials } from "../format.js";
import { href } from "../router.js";

export class SidebarView {
  constructor(app, id) {
    this.app = app;
    this.ws = app.workspace;
    this.id = id;
    this.contactId = null;
    this.card = h("section", { class: "side-card", aria: { labelledby: "contact-heading" } });
    this.details = h("section", { class: "side-card", aria: { label: "Conversation details" } });
    // The merchant panel's slot: present only for members with the Revenue permission.
    this.merchant = this.ws.canRevenue
      ? h("section", { class: "side-card merchant-panel", id: "merchant-panel", data: { panel: "merchant" }, aria: { labelledby: "merchant-heading" }, hidden: true })
      : null;
    this.actions = h("section", { class: "side-card", aria: { label: "Contact actions" }, hidden: !this.ws.can("contacts.erase") });
    this.el = h("div", { class: "sidebar" }, this.card, this.merchant, this.details, this.actions);
    this.listeners = [
      ["contact", (e) => { if (e.detail.id === this.contactId) this.render(); }],
      ["conversation", (e) => { if (e.detail.id === this.id) this.render(); }],
      ["list", () => this.render()],
      ["presence", (e) => { if (e.detail.id === this.contactId) this.render(); }],
    ];
    for (const [type, fn] of this.listeners) this.ws.addEventListener(type, fn);
    this.render();
  }

  destroy() {
    for (const [type, fn] of this.listeners) this.ws.removeEventListener(type, fn);
    this.destroyed = true;
  }

  render() {
    const ws = this.ws;
    const conv = ws.conversations.get(this.id);
    const contactId = conv && conv.contact_id;
    if (contactId !== this.contactId) {
      this.contactId = contactId;
      if (contactId) {
        ws.loadContact(contactId).catch((e) => {
          if (!(e instanceof ApiError)) throw e;
          this.contactError = e;
          this.render();
        });
        this.loadMerchant();
      }
    }
    const contact = contactId ? ws.contact(contactId) : null;
    // Called on every list change: the DOM is rebuilt only when what it shows changed.
    const sig = JSON.stringify([contact, contactId, ws.contactsOnline.has(contactId), !!this.contactError,
                                conv && [conv.app_id, conv.channel, conv.created_at, conv.assignee_id]]);
    if (sig === this.sig) return;
    this.sig = sig;
    this.renderContact(contact, contactId);
    this.renderDetails(conv);
    this.renderActions(contact, contactId);
  }

  renderContact(contact, contactId) {
    const name = contactName(contact, contactId);
    const online = contactId && this.ws.contactsOnline.has(contactId);
    if (!contact) {
      replace(this.card, h("h2", { id: "contact-heading", text: name }),
        h("p", { class: "muted", text: this.contactError ? "Contact details unavailable." : contactId ? "Loading…" : "No contact." }));
      return;
    }
    const verified = !!contact.verified;
    const badge = verified
      ? h("span", { class: "badge badge-verified", title: "Identity proven by user_hash (HMAC with the app's identity secret)" }, icon("shield"), "Verified")
      : h("span", { class: "badge badge-unverified", title: "Identity not proven: the details were typed or sent without a valid user_hash" }, "Unverified");
    const rows = [
      ["Email", contact.email], ["External ID", contact.external_id], ["Company", contact.company], ["Phone", contact.phone],
      ["Shop", contact.shop ? contact.shop + (contact.shop_verified ? " (verified)" : " (unverified)") : null],
      ["First seen", contact.created_at ? fullTime(contact.created_at) : null],
      ["Last seen", contact.last_seen_at ? fullTime(contact.last_seen_at) : null],
    ].filter(([, v]) => v !== null && v !== undefined && v !== "");
    const custom = contact.custom_data && typeof contact.custom_data === "object" ? Object.entries(contact.custom_data) : [];
    replace(this.card,
      h("div", { class: "contact-head" },
        avatar(initials(name), hueOf(contactId), "large"),
        h("div", null,
          h("h2", { id: "contact-heading", text: name }),
          h("p", { class: "contact-state" }, badge,
            h("span", { class: ["presence-dot", online && "online"], aria: { hidden: "true" } }),
            h("span", { class: "muted", text: online ? "Online now" : "Offline" })))),
      rows.length ? h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])) : null,
      Array.isArray(contact.tags) && contact.tags.length
        ? h("p", { class: "contact-tags" }, contact.tags.map((t) => h("span", { class: "tag-chip small", text: "#" + (t.name || t) })))
        : null,
      h("h3", { text: "Custom data" }),
      custom.length
        ? h("dl", { class: "facts custom" }, custom.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: typeof v === "string" ? v : JSON.stringify(v) })]))
        : h("p", { class: "muted", text: "None sent by the app." }));
  }

  // Erasure (data rights): the contact, their conversations and messages, everywhere.
  renderActions(contact, contactId) {
    if (this.actions.hidden || !contactId) return;
    const name = contactName(contact, contactId);
    const error = h("p", { class: "action-error", role: "alert", hidden: true });
    const erase = h("button", { type: "button", class: "danger-quiet small" }, icon("trash"), "Erase contact");
    erase.addEventListener("click", async () => {
      const ok = await confirmDialog("Erase " + name + "?", "The contact, all their conversations and messages are deleted for good, "
        + "everywhere (the widget too). Use this for a deletion request.", { confirm: "Erase for good", danger: true });
      if (!ok) return;
      try {
        await this.app.api.del(paths.contact(this.ws.orgId, contactId));
        this.ws.forgetContact(contactId);
        announce(name + " erased");
        this.app.go(href("inbox"));
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        error.hidden = false;
        error.textContent = e.message;
      }
    });
    replace(this.actions, h("h3", { text: "Data" }), erase, error);
  }

  renderDetails(conv) {
    if (!conv) {
      replace(this.details);
      return;
    }
    const app = conv.app_id ? this.ws.apps.get(conv.app_id) : null;
    replace(this.details, h("h3", { text: "Conversation" }),
      h("dl", { class: "facts" },
        h("dt", { text: "App" }), h("dd", { text: app ? app.name : conv.app_id ? "Deleted app" : "—" }),
        h("dt", { text: "Channel" }), h("dd", { text: conv.channel }),
        h("dt", { text: "Started" }), h("dd", { text: conv.created_at ? fullTime(conv.created_at) : "—" }),
        h("dt", { text: "Assignee" }), h("dd", { text: conv.assignee_id ? this.ws.memberName(conv.assignee_id) : "Unassigned" })));
  }

  // The merchant panel: an extension may render it (window.ConvotInbox.panels.merchant), else the
  // inbox renders GET /v1/orgs/{org}/contacts/{contact}/merchant. 404 (no linked merchant, or no
  // Revenue permission) hides the panel.
  async loadMerchant() {
    const slot = this.merchant;
    if (!slot) return;
    const contactId = this.contactId;
    const ctx = { orgId: this.ws.orgId, contactId, conversationId: this.id, api: this.app.api };
    const custom = window.ConvotInbox && window.ConvotInbox.panels && window.ConvotInbox.panels.merchant;
    slot.hidden = true;
    if (typeof custom === "function") {
      replace(slot);
      try {
        const shown = await custom(slot, ctx);
        slot.hidden = shown === false;
      } catch (e) {
        slot.hidden = true;
      }
      return;
    }
    let data;
    try {
      data = await this.app.api.get(paths.merchant(this.ws.orgId, contactId));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      return;
    }
    if (this.destroyed || contactId !== this.contactId) return;
    renderMerchant(slot, data);
    slot.hidden = false;
  }
}

function money(amount, currency) {
  const n = Number(amount);
  if (amount === null || amount === undefined || !isFinite(n)) return "—";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD" }).format(n);
  } catch (e) {
    return amount + " " + (currency || "");
  }
}

const EVENT_LABELS = {
  RELATIONSHIP_INSTALLED: "Installed", RELATIONSHIP_UNINSTALLED: "Uninstalled", RELATIONSHIP_REACTIVATED: "Reactivated",
  RELATIONSHIP_DEACTIVATED: "Deactivated", SUBSCRIPTION_CHARGE_ACCEPTED: "Plan accepted", SUBSCRIPTION_CHARGE_ACTIVATED: "Plan activated",
  SUBSCRIPTION_CHARGE_CANCELED: "Plan cancelled", SUBSCRIPTION_CHARGE_DECLINED: "Plan declined", SUBSCRIPTION_CHARGE_EXPIRED: "Plan expired",
  SUBSCRIPTION_CHARGE_FROZEN: "Plan frozen", SUBSCRIPTION_CHARGE_UNFROZEN: "Plan unfrozen",
};

function eventLabel(type) {
  return EVENT_LABELS[type] || String(type || "").replace(/_/g, " ").toLowerCase();
}

// GET .../contacts/{id}/merchant: {shop_domain, apps: [{app_name, plan, status, mrr, lifetime_value,
// currency, installed_at, recent_events: [{type, occurred_at}]}]} (admin_api/shopify.py).
export function renderMerchant(slot, data) {
  const apps = Array.isArray(data && data.apps) ? data.apps : [];
  replace(slot, h("h3", { id: "merchant-heading", text: "Merchant" }),
    h("p", { class: "merchant-shop" }, h("strong", { text: (data && data.shop_domain) || "" })),
    apps.length ? null : h("p", { class: "muted", text: "No app of yours is installed on this shop." }),
    apps.map((m) => h("div", { class: "merchant" },
      h("p", { class: "merchant-app" }, h("strong", { text: m.app_name || m.app_gid || "App" }), " ",
        h("span", { class: "pill pill-" + (m.status || "none"), text: m.status || "—" })),
      h("dl", { class: "facts" },
        h("dt", { text: "Plan" }), h("dd", { text: m.plan || "—" }),
        h("dt", { text: "MRR" }), h("dd", { text: money(m.mrr, m.currency) }),
        h("dt", { text: "Lifetime value" }), h("dd", { text: money(m.lifetime_value, m.currency) }),
        m.installed_at ? [h("dt", { text: "Installed" }), h("dd", { text: fullTime(m.installed_at) })] : null,
        m.trial_ends_at ? [h("dt", { text: "Trial ends" }), h("dd", { text: fullTime(m.trial_ends_at) })] : null),
      Array.isArray(m.recent_events) && m.recent_events.length
        ? h("ul", { class: "merchant-events", aria: { label: "Recent events of " + (m.app_name || "the app") } },
            m.recent_events.slice(0, 5).map((ev) => h("li", null, h("span", { text: eventLabel(ev.type) }),
              h("time", { class: "muted", text: " " + fullTime(ev.occurred_at) }))))
        : null)));
}
