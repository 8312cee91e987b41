// Apps: one per Shopify app the organisation supports. Public key and install snippet, allowed
// origins, identity verification and its secret (reveal is audited, rotation needs a fresh
// password), and the widget's look with a live preview.
import { paths } from "../api.js";
import { announce, busy, confirmDialog, copyButton, field, fieldError, h, modal, replace } from "../dom.js";
import { fullTime } from "../format.js";
import { href } from "../router.js";
import { errorLine, sectionHead, showError, status } from "./settings.js";

const COLOR = /^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$/;

export async function appsSection(root, ctx) {
  const { api, org } = ctx;
  const list = await api.get(paths.apps(org.id));
  if (!ctx.alive()) return;
  const manage = (org.permissions || []).includes("apps.manage");
  const add = manage ? h("button", { type: "button", class: "primary", onclick: () => createDialog(ctx) }, "New app") : null;
  replace(root, sectionHead("Apps", "Each app has its own widget, allowed sites and identity secret.", add),
    list.items.length
      ? h("ul", { class: "cards" }, list.items.map((a) => h("li", { class: "card app-card" },
          h("span", { class: "swatch", data: { color: a.settings.color } }),
          h("div", null, h("h3", null, h("a", { href: href("settings", { section: "apps", id: a.id }) }, a.name)),
            h("p", { class: "muted" }, h("code", { text: a.public_key }), " · ", a.allowed_origins.length + " allowed origin(s)",
              a.require_verification ? " · identity verification required" : "")))))
      : h("p", { class: "muted", text: "No apps yet. Create one to get its widget snippet." }));
  for (const swatch of root.querySelectorAll(".swatch")) if (COLOR.test(swatch.dataset.color)) swatch.style.setProperty("--c", swatch.dataset.color);
}

function createDialog(ctx) {
  return modal("New app", (close) => {
    const name = h("input", { class: "input", type: "text", maxlength: "200", required: true, autofocus: true, placeholder: "Northwind Support" });
    const origins = h("textarea", { class: "input", rows: "3", placeholder: "https://your-app.example.com" });
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "primary" }, "Create app");
    const form = h("form", { novalidate: true }, field("Name", name, "Shown to your users in the widget's header."),
      field("Allowed origins", origins, "One per line: the sites where the widget may open sessions."), error,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(null) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!name.value.trim()) return fieldError(name, "Give the app a name.");
      busy(submit, async () => {
        try {
          const created = await ctx.api.post(paths.apps(ctx.org.id), { name: name.value.trim(), allowed_origins: lines(origins.value) });
          close(created);
          ctx.app.go(href("settings", { section: "apps", id: created.app.id }));
        } catch (e) {
          if (e.field && e.field.startsWith("allowed_origins")) fieldError(origins, "Each line must be an origin like https://shop.example.com.");
          else showError(error, e);
        }
      });
    });
    return form;
  });
}

function lines(text) {
  return text.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
}

export function installSnippet(publicKey, apiBase) {
  return '<script>window.Convot = {app_id: "' + publicKey + '"};</script>\n'
    + '<script async src="' + apiBase + '/widget/loader.js"></script>';
}

// Black or white text, whichever contrasts more with the colour (as the widget does).
export function textOn(color) {
  let hex = color.slice(1);
  if (hex.length === 3) hex = hex.split("").map((c) => c + c).join("");
  const [r, g, b] = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#000000" : "#ffffff";
}

export async function appDetail(root, ctx, appId) {
  const { api, org } = ctx;
  const app = await api.get(paths.app(org.id, appId));
  if (!ctx.alive()) return;
  const manage = (org.permissions || []).includes("apps.manage");
  const error = errorLine();
  const saved = status();
  const reload = () => appDetail(root, ctx, appId);

  // General
  const name = h("input", { class: "input", type: "text", maxlength: "200", value: app.name, disabled: !manage });
  const origins = h("textarea", { class: "input", rows: "4", disabled: !manage }, app.allowed_origins.join("\n"));
  const requireVerification = h("input", { type: "checkbox", checked: app.require_verification, disabled: !manage });

  // Widget look
  const color = h("input", { class: "input color", type: "color", value: expand(app.settings.color), disabled: !manage, aria: { label: "Brand colour" } });
  const greeting = h("textarea", { class: "input", rows: "2", maxlength: "280", disabled: !manage }, app.settings.greeting);
  const section = h("select", { class: "input", disabled: !manage },
    h("option", { value: "conversation", selected: app.settings.default_section === "conversation" }, "The latest conversation"),
    h("option", { value: "new_conversation", selected: app.settings.default_section === "new_conversation" }, "A new conversation"));
  const emailPrompt = h("input", { type: "checkbox", checked: app.settings.email_prompt, disabled: !manage });
  const preview = widgetPreview();
  const refresh = () => preview.update({ name: name.value.trim() || app.name, color: color.value, greeting: greeting.value, emailPrompt: emailPrompt.checked });
  for (const el of [name, color, greeting, emailPrompt]) el.addEventListener("input", refresh);
  emailPrompt.addEventListener("change", refresh);
  refresh();

  const save = h("button", { type: "button", class: "primary" }, "Save changes");
  save.addEventListener("click", () => busy(save, async () => {
    showError(error, null);
    fieldError(origins, "");
    try {
      await api.patch(paths.app(org.id, appId), {
        name: name.value.trim(), allowed_origins: lines(origins.value), require_verification: requireVerification.checked,
        settings: { color: color.value, greeting: greeting.value.trim(), default_section: section.value, email_prompt: emailPrompt.checked },
      });
      saved.textContent = "Saved.";
      announce("App saved");
    } catch (e) {
      if (e.field && e.field.startsWith("allowed_origins")) fieldError(origins, "Each line must be an origin like https://shop.example.com.");
      else showError(error, e);
    }
  }));

  const apiBase = location.origin;
  const snippet = installSnippet(app.public_key, apiBase);

  // Identity secret: shown on request (audited); rotation asks for the password again.
  const secretOut = h("code", { class: "secret-value", text: "••••••••••••••••" });
  const reveal = h("button", { type: "button", class: "secondary small" }, "Reveal");
  reveal.addEventListener("click", () => busy(reveal, async () => {
    try {
      const s = await api.get(paths.identitySecret(org.id, appId));
      secretOut.textContent = s.identity_secret;
      reveal.replaceWith(copyButton(() => s.identity_secret));
    } catch (e) {
      showError(error, e);
    }
  }));
  const rotate = h("button", { type: "button", class: "danger-quiet small" }, "Rotate");
  rotate.addEventListener("click", async () => {
    const ok = await confirmDialog("Rotate the identity secret?", "Hashes made with the current secret stop verifying at once: deploy the new secret to your server right after.",
                                   { confirm: "Rotate", danger: true });
    if (!ok) return;
    busy(rotate, async () => {
      try {
        const s = await api.post(paths.rotateSecret(org.id, appId));
        secretOut.textContent = s.identity_secret;
        announce("Identity secret rotated");
      } catch (e) {
        showError(error, e);
      }
    });
  });

  const del = h("button", { type: "button", class: "danger" }, "Delete app");
  del.addEventListener("click", async () => {
    const ok = await confirmDialog("Delete " + app.name + "?", "Its widget stops working at once. Its conversations stay in the inbox.", { confirm: "Delete app", danger: true });
    if (!ok) return;
    try {
      await api.del(paths.app(org.id, appId));
      announce("App deleted");
      ctx.app.go(href("settings", { section: "apps" }));
    } catch (e) {
      showError(error, e);
    }
  });

  replace(root,
    h("p", { class: "crumbs" }, h("a", { href: href("settings", { section: "apps" }) }, "Apps"), " / ", app.name),
    sectionHead(app.name, "Public key " + app.public_key),
    error,
    h("div", { class: "card" }, h("h3", { text: "Install" }),
      h("p", { text: "Paste this before </body> on every page of your app where the chat should appear:" }),
      h("pre", { class: "code" }, h("code", { text: snippet })), copyButton(() => snippet, "Copy snippet"),
      h("p", { class: "hint", text: "To show who is signed in, call Convot.identify({...}) with a user_hash computed on your server (docs/widget.md)." })),
    h("div", { class: "grid-2" },
      h("div", { class: "card" }, h("h3", { text: "General" }),
        field("Name", name),
        field("Allowed origins", origins, "One per line, e.g. https://admin.shopify.com. The widget opens sessions only from these sites."),
        h("label", { class: "check" }, requireVerification, "Require identity verification (refuse sessions without a valid user_hash)"),
        h("h3", { text: "Widget look" }),
        field("Brand colour", color),
        field("Greeting", greeting, "At most 280 characters."),
        field("Opens on", section),
        h("label", { class: "check" }, emailPrompt, "Ask for an email after the first message"),
        manage ? h("div", { class: "actions left" }, save, saved) : null),
      h("div", { class: "card preview-card" }, h("h3", { text: "Preview" }), preview.el)),
    h("div", { class: "card" }, h("h3", { text: "Identity secret" }),
      h("p", { text: "Your server computes user_hash = HMAC-SHA256(external_id or email) and shop_hash = HMAC-SHA256(shop) with it, in hex. Never put it in the browser." }),
      manage ? h("p", { class: "secret" }, secretOut, " ", reveal, " ", rotate) : h("p", { class: "muted", text: "Admins and owners can see it." }),
      h("p", { class: "hint", text: "Last rotated " + fullTime(app.identity_secret_rotated_at) + "." })),
    manage ? h("div", { class: "card danger-zone" }, h("h3", { text: "Delete" }), del) : null);
}

function expand(c) {
  if (!COLOR.test(c || "")) return "#4f46e5";
  return c.length === 4 ? "#" + c.slice(1).split("").map((x) => x + x).join("") : c.toLowerCase();
}

// A faithful sketch of the widget (not the widget itself): header in the brand colour, the
// greeting, a reply box and the launcher. Colours go through CSSOM custom properties (allowed
// by the CSP), validated first.
function widgetPreview() {
  const title = h("span", { class: "wp-title" });
  const greeting = h("p", { class: "wp-greeting" });
  const prompt = h("p", { class: "wp-prompt", text: "Leave your email so we can reply if you leave." });
  const el = h("div", { class: "widget-preview", aria: { label: "Widget preview" }, role: "img" },
    h("div", { class: "wp-panel" },
      h("div", { class: "wp-head" }, title, h("span", { class: "wp-presence", text: "Online" })),
      h("div", { class: "wp-body" }, greeting, h("p", { class: "wp-msg wp-mine", text: "Hi! How do I change my plan?" }), prompt),
      h("div", { class: "wp-input", text: "Write a message…" })),
    h("div", { class: "wp-launcher" }));
  return {
    el,
    update({ name, color, greeting: text, emailPrompt }) {
      const c = COLOR.test(color) ? color : "#4f46e5";
      el.style.setProperty("--c", c);
      el.style.setProperty("--t", textOn(c));
      title.textContent = name;
      greeting.textContent = text;
      greeting.hidden = !text.trim();
      prompt.hidden = !emailPrompt;
      el.setAttribute("aria-label", "Widget preview: " + name + (text.trim() ? ", greeting: " + text : ""));
    },
  };
}
