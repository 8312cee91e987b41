// For developers: REST API keys (shown once, scoped, revocable) and outgoing webhooks (secret
// shown once, events, enable/disable, test, delivery log).
import { paths } from "../api.js";
import { announce, busy, confirmDialog, copyButton, field, fieldError, h, modal, replace } from "../dom.js";
import { fullTime } from "../format.js";
import { href } from "../router.js";
import { errorLine, sectionHead, showError, table } from "./settings.js";

const SCOPES = ["conversations:read", "conversations:write", "messages:read", "messages:write",
                "contacts:read", "contacts:write", "webhooks:read", "webhooks:write"];
const EVENTS = ["message.received", "message.sent", "message.deleted", "conversation.created", "conversation.assigned",
                "conversation.resolved", "conversation.reopened", "contact.created", "contact.identified"];

// The secret of something just created: shown once, with a copy button.
function shownOnce(title, value, text) {
  return modal(title, (close) => h("div", null,
    h("p", { text }),
    h("pre", { class: "code" }, h("code", { text: value })),
    h("div", { class: "actions" }, copyButton(() => value), h("button", { type: "button", class: "primary", autofocus: true, onclick: () => close(true) }, "Done"))),
  { wide: true });
}

export async function apiKeysSection(root, ctx) {
  const { api, org } = ctx;
  const list = await api.get(paths.apiKeys(org.id));
  if (!ctx.alive()) return;
  const error = errorLine();
  const reload = () => apiKeysSection(root, ctx);
  const add = h("button", { type: "button", class: "primary", onclick: () => createKeyDialog(ctx).then((done) => done && reload()) }, "New API key");
  const rows = list.items.map((k) => h("tr", { class: k.revoked_at ? "revoked" : "" },
    h("td", null, h("strong", { text: k.name }), h("br"), h("code", { class: "muted", text: k.prefix + ":…" })),
    h("td", null, h("span", { class: "scopes" }, k.scopes.map((s) => h("span", { class: "tag-chip small", text: s })))),
    h("td", { text: k.last_used_at ? fullTime(k.last_used_at) : "Never" }),
    h("td", { text: k.revoked_at ? "Revoked " + fullTime(k.revoked_at) : "Active" }),
    h("td", { class: "right" }, k.revoked_at ? null : h("button", { type: "button", class: "danger-quiet small", onclick: async () => {
      const ok = await confirmDialog("Revoke " + k.name + "?", "Requests with this key are refused from now on.", { confirm: "Revoke", danger: true });
      if (!ok) return;
      try {
        await api.del(paths.apiKey(org.id, k.id));
        announce("API key revoked");
        reload();
      } catch (e) {
        showError(error, e);
      }
    } }, "Revoke"))));
  replace(root, sectionHead("API keys", "For the REST API: send Authorization: Bearer ck_<id>:<secret>. A key is shown once; only its hash is stored.", add),
    error, rows.length ? table(["Key", "Scopes", "Last used", "State", ""], rows, "API keys") : h("p", { class: "muted", text: "No API keys yet." }));
}

function createKeyDialog(ctx) {
  return modal("New API key", (close) => {
    const name = h("input", { class: "input", type: "text", maxlength: "100", required: true, autofocus: true, placeholder: "Zapier" });
    const boxes = SCOPES.map((s) => [s, h("input", { type: "checkbox", value: s })]);
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "primary" }, "Create key");
    const scopes = h("fieldset", { class: "scopes-field" }, h("legend", { text: "Scopes" }),
      boxes.map(([s, box]) => h("label", { class: "check small" }, box, s)));
    const form = h("form", { novalidate: true }, field("Name", name, "What uses this key."), scopes, error,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!name.value.trim()) return fieldError(name, "Name the key.");
      const chosen = boxes.filter(([, b]) => b.checked).map(([s]) => s);
      if (!chosen.length) return showError(error, new Error("Choose at least one scope."));
      busy(submit, async () => {
        try {
          const created = await ctx.api.post(paths.apiKeys(ctx.org.id), { name: name.value.trim(), scopes: chosen });
          close(true);
          await shownOnce("Your new API key", created.key, "Copy it now: it is not shown again.");
        } catch (e) {
          showError(error, e);
        }
      });
    });
    return form;
  });
}

export async function webhooksSection(root, ctx) {
  const { api, org } = ctx;
  const list = await api.get(paths.webhooks(org.id));
  if (!ctx.alive()) return;
  const error = errorLine();
  const reload = () => webhooksSection(root, ctx);
  const add = h("button", { type: "button", class: "primary", onclick: () => createHookDialog(ctx).then((done) => done && reload()) }, "New endpoint");
  const rows = (list.items || []).map((w) => h("tr", null,
    h("td", null, h("a", { href: href("settings", { section: "webhooks", id: w.id }) }, h("code", { text: w.url }))),
    h("td", { text: (w.events || []).length + " event(s)" }),
    h("td", null, h("span", { class: "pill " + (w.enabled ? "pill-open" : "pill-resolved"), text: w.enabled ? "Enabled" : "Disabled" })),
    h("td", { text: fullTime(w.created_at) })));
  replace(root, sectionHead("Webhooks", "Convot POSTs events to your endpoints, signed with each endpoint's secret (docs/webhooks.md).", add),
    error, rows.length ? table(["Endpoint", "Events", "State", "Created"], rows, "Webhook endpoints") : h("p", { class: "muted", text: "No endpoints yet." }));
}

function eventBoxes(selected) {
  return EVENTS.map((ev) => [ev, h("input", { type: "checkbox", value: ev, checked: !selected || selected.includes(ev) })]);
}

function createHookDialog(ctx) {
  return modal("New webhook endpoint", (close) => {
    const url = h("input", { class: "input", type: "url", required: true, autofocus: true, placeholder: "https://example.com/convot" });
    const boxes = eventBoxes(null);
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "primary" }, "Add endpoint");
    const form = h("form", { novalidate: true }, field("URL", url, "HTTPS, reachable from the internet."),
      h("fieldset", { class: "scopes-field" }, h("legend", { text: "Events" }), boxes.map(([ev, b]) => h("label", { class: "check small" }, b, ev))),
      error, h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      fieldError(url, "");
      if (!url.value.trim()) return fieldError(url, "Enter the endpoint's URL.");
      const events = boxes.filter(([, b]) => b.checked).map(([ev]) => ev);
      if (!events.length) return showError(error, new Error("Choose at least one event."));
      busy(submit, async () => {
        try {
          const created = await ctx.api.post(paths.webhooks(ctx.org.id), { url: url.value.trim(), events });
          close(true);
          if (created && created.secret) await shownOnce("Signing secret", created.secret, "Verify every request's Convot-Signature with this secret. It is shown once.");
        } catch (e) {
          if (e.field === "url") fieldError(url, e.message === e.code ? "Enter a valid https:// URL." : (e.details.reason ? "This URL " + e.details.reason : e.message));
          else showError(error, e);
        }
      });
    });
    return form;
  }, { wide: true });
}

export async function webhookDetail(root, ctx, id) {
  const { api, org } = ctx;
  const [hook, deliveries] = await Promise.all([api.get(paths.webhook(org.id, id)), api.get(paths.webhookDeliveries(org.id, id))]);
  if (!ctx.alive()) return;
  const w = hook.webhook || hook;
  const error = errorLine();
  const reload = () => webhookDetail(root, ctx, id);
  const boxes = eventBoxes(w.events || []);
  const enabled = h("input", { type: "checkbox", checked: !!w.enabled });
  const save = h("button", { type: "button", class: "primary" }, "Save");
  save.addEventListener("click", () => busy(save, async () => {
    try {
      await api.patch(paths.webhook(org.id, id), { enabled: enabled.checked, events: boxes.filter(([, b]) => b.checked).map(([ev]) => ev) });
      announce("Endpoint saved");
      reload();
    } catch (e) {
      showError(error, e);
    }
  }));
  const test = h("button", { type: "button", class: "secondary" }, "Send test event");
  test.addEventListener("click", () => busy(test, async () => {
    try {
      await api.post(paths.webhookTest(org.id, id));
      announce("Test event queued");
      setTimeout(reload, 1500);
    } catch (e) {
      showError(error, e);
    }
  }));
  const secretOut = h("code", { class: "secret-value", text: "whsec_••••••••••••" });
  const reveal = h("button", { type: "button", class: "secondary small" }, "Reveal");
  reveal.addEventListener("click", () => busy(reveal, async () => {
    try {
      const s = await api.get(paths.webhookSecret(org.id, id));
      secretOut.textContent = s.secret;
      reveal.replaceWith(copyButton(() => s.secret));
    } catch (e) {
      showError(error, e);
    }
  }));
  const rotate = h("button", { type: "button", class: "danger-quiet small" }, "Rotate");
  rotate.addEventListener("click", async () => {
    if (!(await confirmDialog("Rotate the signing secret?", "Signatures with the current secret stop being sent: update your receiver right after.",
                              { confirm: "Rotate", danger: true }))) return;
    busy(rotate, async () => {
      try {
        const s = await api.post(paths.rotateWebhookSecret(org.id, id));
        secretOut.textContent = s.secret;
        announce("Signing secret rotated");
      } catch (e) {
        showError(error, e);
      }
    });
  });
  const del = h("button", { type: "button", class: "danger" }, "Delete endpoint");
  del.addEventListener("click", async () => {
    if (!(await confirmDialog("Delete this endpoint?", "It receives nothing from now on.", { confirm: "Delete", danger: true }))) return;
    try {
      await api.del(paths.webhook(org.id, id));
      ctx.app.go(href("settings", { section: "webhooks" }));
    } catch (e) {
      showError(error, e);
    }
  });
  const rows = (deliveries.items || []).map((d) => h("tr", null,
    h("td", null, h("code", { text: d.event })),
    h("td", null, h("span", { class: "pill pill-" + (d.status === "delivered" ? "open" : d.status === "failed" ? "failed" : "pending"), text: d.status })),
    h("td", { text: String(d.attempts) }),
    h("td", { text: d.last_status ? "HTTP " + d.last_status : d.last_error || "—" }),
    h("td", { text: fullTime(d.delivered_at || d.created_at) })));
  replace(root,
    h("p", { class: "crumbs" }, h("a", { href: href("settings", { section: "webhooks" }) }, "Webhooks"), " / endpoint"),
    sectionHead("Endpoint", null), h("pre", { class: "code" }, h("code", { text: w.url })), error,
    h("div", { class: "card" },
      h("label", { class: "check" }, enabled, "Enabled"),
      h("fieldset", { class: "scopes-field" }, h("legend", { text: "Events" }), boxes.map(([ev, b]) => h("label", { class: "check small" }, b, ev))),
      h("div", { class: "actions left" }, save, test)),
    h("div", { class: "card" }, h("h3", { text: "Signing secret" }),
      h("p", { class: "secret" }, secretOut, " ", reveal, " ", rotate),
      h("p", { class: "hint", text: "Verify Convot-Signature with it (docs/webhooks.md)." })),
    h("div", { class: "card" }, h("h3", { text: "Delivery log" }),
      rows.length ? table(["Event", "State", "Attempts", "Last answer", "When"], rows, "Deliveries") : h("p", { class: "muted", text: "Nothing sent yet." }),
      h("button", { type: "button", class: "secondary small", onclick: reload }, "Refresh")),
    h("div", { class: "card danger-zone" }, del));
}
