// Settings: a section navigation (only the sections the member may use) and the sections
// themselves. Every section loads its data when shown and handles its own errors.
import { ApiError, paths } from "../api.js";
import { announce, busy, confirmDialog, field, fieldError, h, modal, replace } from "../dom.js";
import { AVAILABILITY_LABELS, fullTime, memberName, ROLE_LABELS } from "../format.js";
import { href } from "../router.js";
import { appDetail, appsSection } from "./settings_apps.js";
import { apiKeysSection, webhookDetail, webhooksSection } from "./settings_dev.js";
import { auditSection, dataSection } from "./settings_data.js";
import { securitySection } from "./settings_security.js";
import { shopifySection } from "./settings_revenue.js";
import { revenueSection } from "./revenue.js";
import { billingSection } from "./settings_billing.js";

const SECTIONS = [
  { id: "team", label: "Team", permission: "team.read", render: teamSection },
  { id: "apps", label: "Apps", permission: "apps.read", render: appsSection, detail: appDetail },
  { id: "api-keys", label: "API keys", permission: "api_keys.manage", render: apiKeysSection },
  { id: "webhooks", label: "Webhooks", permission: "webhooks.manage", render: webhooksSection, detail: webhookDetail },
  { id: "revenue", label: "Revenue", permission: "revenue.read", render: revenueSection },
  { id: "shopify", label: "Shopify", permission: "shopify.manage", render: shopifySection },
  { id: "billing", label: "Billing", permission: "billing.manage", render: billingSection },
  { id: "security", label: "Security", permission: null, render: securitySection },
  { id: "audit", label: "Audit log", permission: "audit.read", render: auditSection },
  { id: "data", label: "Export & deletion", permission: "data.export", alsoSuperOwner: true, render: dataSection },
  { id: "notifications", label: "Notifications", permission: null, render: notificationsSection },
];

export class SettingsView {
  constructor(app) {
    this.app = app;
    this.nav = h("nav", { class: "settings-nav", aria: { label: "Settings" } });
    this.content = h("section", { class: "settings-content", aria: { live: "off" } });
    this.el = h("div", { class: "settings" }, h("div", { class: "settings-side" }, h("h1", { text: "Settings" }), this.nav), this.content);
    this.token = 0;
  }

  destroy() {
    this.token++;
  }

  allowed() {
    const org = this.app.org;
    const perms = org.permissions || [];
    if (org.mfaBlocked) return SECTIONS.filter((s) => s.id === "security");
    return SECTIONS.filter((s) => !s.permission || perms.includes(s.permission) || (s.alsoSuperOwner && org.is_super_owner));
  }

  async show(route) {
    const sections = this.allowed();
    const wanted = route.params.section || "team";
    const section = sections.find((s) => s.id === wanted) || sections[0];
    replace(this.nav, sections.map((s) => h("a", { href: href("settings", { section: s.id }), class: ["settings-link", s === section && "active"],
                                                    aria: { current: s === section ? "page" : null } }, s.label)));
    const token = ++this.token;
    const ctx = { app: this.app, api: this.app.api, org: this.app.org, ws: this.app.workspace, alive: () => token === this.token };
    const body = h("div", { class: "section" });
    replace(this.content, body);
    try {
      const render = route.params.id && section.detail ? section.detail : section.render;
      await render(body, ctx, route.params.id);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (token === this.token) replace(body, h("div", { class: "alert alert-error", role: "alert", text: e.message }));
    }
    const heading = body.querySelector("h2");
    if (heading && token === this.token) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
  }
}

export function sectionHead(title, text, ...actions) {
  return h("header", { class: "section-head" }, h("div", null, h("h2", { text: title }), text ? h("p", { class: "lead", text }) : null),
    actions.length ? h("div", { class: "section-actions" }, actions) : null);
}

export function status() {
  return h("p", { class: "form-status", role: "status" });
}

export function errorLine() {
  return h("p", { class: "alert alert-error", role: "alert", hidden: true });
}

export function showError(line, e) {
  line.hidden = !e;
  line.textContent = e ? e.message : "";
}

export function table(headers, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", { class: "table" },
    caption ? h("caption", { class: "visually-hidden", text: caption }) : null,
    h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", null, rows)));
}

// --- team --------------------------------------------------------------------------------------

async function teamSection(root, ctx) {
  const { api, org } = ctx;
  const manage = (org.permissions || []).includes("team.manage");
  const [members, invites] = await Promise.all([
    api.get(paths.members(org.id)),
    manage ? api.get(paths.invites(org.id)) : Promise.resolve({ items: [] }),
  ]);
  if (!ctx.alive()) return;
  const error = errorLine();
  const me = ctx.app.me.id;
  const inviteButton = manage ? h("button", { type: "button", class: "primary", onclick: () => inviteDialog(ctx).then((done) => done && teamSection(root, ctx)) }, "Invite someone") : null;

  const rows = members.items.map((m) => {
    const cells = [
      h("td", null, h("strong", { text: memberName(m) }), m.user_id === me ? " (you)" : "", h("br"), h("span", { class: "muted", text: m.email })),
    ];
    const canEdit = manage && !m.is_super_owner && (org.role === "owner" || m.role !== "owner");
    if (canEdit) {
      const role = h("select", { class: "input compact", aria: { label: "Role of " + memberName(m) } },
        ["agent", "admin", "owner"].filter((r) => org.role === "owner" || r !== "owner").map((r) => h("option", { value: r, selected: r === m.role }, ROLE_LABELS[r])));
      role.addEventListener("change", async () => {
        const ok = await confirmDialog("Change role?", memberName(m) + " becomes " + ROLE_LABELS[role.value] + ". They are signed out everywhere and sign in again with the new role.",
                                       { confirm: "Change role" });
        if (!ok) { role.value = m.role; return; }
        try {
          await api.patch(paths.member(org.id, m.user_id), { role: role.value });
          announce("Role changed");
          teamSection(root, ctx);
        } catch (e) {
          role.value = m.role;
          showError(error, e);
        }
      });
      cells.push(h("td", null, role));
    } else {
      cells.push(h("td", null, ROLE_LABELS[m.role] + (m.is_super_owner ? " (creator)" : "")));
    }
    cells.push(h("td", null, overridesCell(ctx, m, manage && m.role !== "owner", error, () => teamSection(root, ctx))));
    const state = (ctx.ws && ctx.ws.availability.get(m.user_id)) || "offline";
    const forceOff = manage && m.user_id !== me
      ? h("button", { type: "button", class: "secondary small", hidden: state === "offline", aria: { label: "Set " + memberName(m) + " offline" },
          onclick: async () => {
            try {
              await ctx.ws.forceOffline(m.user_id);
              announce(memberName(m) + " is offline");
            } catch (err) {
              showError(error, err);
            }
          } }, "Set offline")
      : null;
    cells.push(h("td", null, h("span", { class: "availability-label", data: { state, user: m.user_id } }, AVAILABILITY_LABELS[state]), " ",
      forceOff, m.mfa_enabled ? h("span", { class: "badge badge-verified small", title: "Two-factor authentication on" }, "2FA") : null));
    const removable = manage && !m.is_super_owner && m.user_id !== me && (org.role === "owner" || m.role !== "owner");
    cells.push(h("td", { class: "right" }, removable ? h("button", { type: "button", class: "danger-quiet small", aria: { label: "Remove " + memberName(m) },
      onclick: async () => {
        const ok = await confirmDialog("Remove " + memberName(m) + "?", "They lose access at once: their sessions end and their open inbox signs out.",
                                       { confirm: "Remove", danger: true });
        if (!ok) return;
        try {
          await api.del(paths.member(org.id, m.user_id));
          announce(memberName(m) + " removed");
          teamSection(root, ctx);
        } catch (e) {
          showError(error, e);
        }
      } }, "Remove") : null));
    return h("tr", { data: { user: m.user_id } }, cells);
  });

  // Availability changes live while the page is open.
  if (ctx.ws) {
    const onPresence = () => {
      if (!ctx.alive()) return ctx.ws.removeEventListener("presence", onPresence);
      for (const label of root.querySelectorAll(".availability-label")) {
        const state = ctx.ws.availability.get(label.dataset.user) || "offline";
        label.dataset.state = state;
        label.textContent = AVAILABILITY_LABELS[state];
        const button = label.parentElement.querySelector("button");
        if (button) button.hidden = state === "offline";
      }
    };
    if (root.presenceListener) ctx.ws.removeEventListener("presence", root.presenceListener);
    root.presenceListener = onPresence;
    ctx.ws.addEventListener("presence", onPresence);
  }

  const pending = invites.items.filter((i) => i.status === "pending");
  replace(root,
    sectionHead("Team", "Who answers in this organisation, with which role. Revenue data is for owners, others only by override.", inviteButton),
    error,
    table(["Member", "Role", "Access", "Availability", ""], rows, "Members"),
    manage ? h("h3", { text: "Pending invitations" }) : null,
    manage ? (pending.length ? table(["Email", "Role", "Expires", ""], pending.map((i) => h("tr", null,
      h("td", { text: i.email }), h("td", { text: ROLE_LABELS[i.role] }), h("td", { text: fullTime(i.expires_at) }),
      h("td", { class: "right" }, h("button", { type: "button", class: "secondary small", onclick: async () => {
        try {
          await api.del(paths.invite(org.id, i.id));
          announce("Invitation revoked");
          teamSection(root, ctx);
        } catch (e) {
          showError(error, e);
        }
      } }, "Revoke")))), "Pending invitations") : h("p", { class: "muted", text: "No pending invitations." })) : null);
}

function overridesCell(ctx, m, editable, error, reload) {
  const { api, org } = ctx;
  const mine = org.permissions || [];
  const boxes = [["revenue", "Revenue", "revenue.read"], ["reports", "Reports", "reports.read"]].map(([key, label, perm]) => {
    const value = m.overrides ? m.overrides[key] : null;
    const roleDefault = m.role === "owner" || (perm === "reports.read" && m.role === "admin");
    const effective = m.role === "owner" ? true : typeof value === "boolean" ? value : roleDefault;
    const box = h("input", { type: "checkbox", checked: effective, disabled: !editable || !mine.includes(perm) });
    box.addEventListener("change", async () => {
      try {
        await api.patch(paths.member(org.id, m.user_id), { overrides: { [key]: box.checked } });
        announce(label + (box.checked ? " granted" : " withdrawn"));
        reload();
      } catch (e) {
        box.checked = !box.checked;
        showError(error, e);
      }
    });
    return h("label", { class: "check small" }, box, label + (typeof value === "boolean" && m.role !== "owner" ? " *" : ""));
  });
  return h("div", { class: "overrides", title: "* set explicitly for this member" }, boxes);
}

function inviteDialog(ctx) {
  const { api, org } = ctx;
  return modal("Invite someone", (close) => {
    const email = h("input", { class: "input", type: "email", required: true, autofocus: true, autocomplete: "off" });
    const role = h("select", { class: "input" }, ["agent", "admin", "owner"].filter((r) => org.role === "owner" || r !== "owner")
      .map((r) => h("option", { value: r }, ROLE_LABELS[r])));
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "primary" }, "Send invitation");
    const form = h("form", { novalidate: true }, field("Email", email), field("Role", role, "Agents answer conversations; admins also manage apps and the team."),
      error, h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      fieldError(email, "");
      if (!email.value.trim()) return fieldError(email, "Enter an email address.");
      busy(submit, async () => {
        try {
          await api.post(paths.invites(org.id), { email: email.value.trim(), role: role.value });
          announce("Invitation sent to " + email.value.trim());
          close(true);
        } catch (e) {
          if (e.field === "email") fieldError(email, "Enter a valid email address.");
          else showError(error, e);
        }
      });
    });
    return form;
  });
}

// --- notifications (this browser) ----------------------------------------------------------------

function notificationsSection(root, ctx) {
  const notifier = ctx.app.notifier;
  const prefs = notifier.prefs();
  const state = status();
  const desktop = h("input", { type: "checkbox", checked: prefs.desktop && notifier.permission() === "granted" });
  const sound = h("input", { type: "checkbox", checked: prefs.sound });
  const previews = h("input", { type: "checkbox", checked: prefs.previews });
  const perm = notifier.permission();
  desktop.disabled = perm === "unsupported" || perm === "denied";
  desktop.addEventListener("change", async () => {
    if (desktop.checked) {
      const result = await notifier.enableDesktop();
      desktop.checked = result === "granted";
      state.textContent = result === "granted" ? "Desktop notifications are on." : "The browser did not allow notifications.";
    } else {
      notifier.setPref("desktop", false);
      state.textContent = "Desktop notifications are off.";
    }
  });
  sound.addEventListener("change", () => {
    notifier.setPref("sound", sound.checked);
    if (sound.checked) notifier.chime();
    state.textContent = sound.checked ? "Sound is on." : "Sound is off.";
  });
  previews.addEventListener("change", () => {
    notifier.setPref("previews", previews.checked);
    state.textContent = previews.checked ? "Notifications show message text." : "Notifications hide message text.";
  });
  replace(root,
    sectionHead("Notifications", "Kept in this browser only. You are notified of new messages in conversations that are yours or unassigned, of assignments to you, and of @mentions."),
    h("div", { class: "stack" },
      h("label", { class: "check" }, desktop, "Desktop notifications"),
      perm === "denied" ? h("p", { class: "hint", text: "Notifications are blocked for this site in your browser's settings." }) : null,
      perm === "unsupported" ? h("p", { class: "hint", text: "This browser cannot show notifications." }) : null,
      h("label", { class: "check" }, previews, "Show message text in notifications"),
      h("label", { class: "check" }, sound, "Play a sound")),
    state);
}
