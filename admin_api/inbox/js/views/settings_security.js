// Security: your two-factor authentication (TOTP + recovery codes), your sessions, and the
// organisation's "require MFA" switch (owners).
import { paths } from "../api.js";
import { announce, busy, confirmDialog, copyButton, field, h, modal, replace } from "../dom.js";
import { fullTime } from "../format.js";
import { qrSvg } from "../qr.js";
import { errorLine, sectionHead, showError, table } from "./settings.js";

export async function securitySection(root, ctx) {
  const { api, org } = ctx;
  const [mfa, sessions] = await Promise.all([api.get(paths.myMfa), api.get(paths.sessions)]);
  if (!ctx.alive()) return;
  const error = errorLine();
  const reload = () => securitySection(root, ctx);

  const mfaBox = h("div", { class: "card" }, h("h3", { text: "Two-factor authentication" }));
  if (mfa.enabled) {
    mfaBox.append(
      h("p", null, h("span", { class: "badge badge-verified" }, "On"), " Sign-ins need a code from your authenticator app. ",
        mfa.recovery_codes_remaining + " recovery codes left."),
      h("div", { class: "actions left" },
        h("button", { type: "button", class: "secondary", onclick: () => recoveryDialog(ctx).then(reload) }, "New recovery codes"),
        h("button", { type: "button", class: "danger-quiet", onclick: () => disableDialog(ctx).then(reload) }, "Turn off")));
  } else {
    const start = h("button", { type: "button", class: "primary" }, "Set up two-factor authentication");
    start.addEventListener("click", () => busy(start, async () => {
      try {
        const setup = await api.post(paths.totpSetup);
        const done = await enableDialog(ctx, setup);
        if (done) {
          ctx.app.session.mfa_enabled = true;
          if (org.mfaBlocked) {
            await ctx.app.signedIn();
            return;
          }
        }
        reload();
      } catch (e) {
        showError(error, e);
      }
    }));
    mfaBox.append(h("p", { text: org.mfaBlocked ? "This organisation requires it: set it up to open the inbox."
                                                 : "Protect your account with a code from an authenticator app at every sign-in." }), start);
  }

  let orgBox = null;
  if ((org.permissions || []).includes("org.manage")) {
    const box = h("input", { type: "checkbox", checked: !!org.require_mfa });
    box.addEventListener("change", async () => {
      try {
        const updated = await api.post(paths.requireMfa(org.id), { require_mfa: box.checked });
        Object.assign(org, updated);
        announce(box.checked ? "Two-factor authentication is now required" : "Two-factor authentication is optional");
      } catch (e) {
        box.checked = !box.checked;
        showError(error, e);
      }
    });
    orgBox = h("div", { class: "card" }, h("h3", { text: "Organisation" }),
      h("label", { class: "check" }, box, "Require two-factor authentication of every member"),
      h("p", { class: "hint", text: "Members without it can only set it up until they have." }));
  }

  const rows = sessions.items.map((s) => h("tr", null,
    h("td", null, describeAgent(s.user_agent), s.current ? h("span", { class: "badge small" }, "This browser") : null),
    h("td", { text: s.ip || "—" }),
    h("td", { text: fullTime(s.last_seen_at) }),
    h("td", { class: "right" }, h("button", { type: "button", class: "secondary small", onclick: async () => {
      if (s.current && !(await confirmDialog("Sign out here?", "This ends the session of this browser.", { confirm: "Sign out" }))) return;
      try {
        await api.del(paths.session_(s.id));
        if (s.current) { ctx.app.signedOut("You are signed out."); return; }
        announce("Session ended");
        reload();
      } catch (e) {
        showError(error, e);
      }
    } }, s.current ? "Sign out" : "End"))));
  const others = sessions.items.filter((s) => !s.current).length;

  replace(root, sectionHead("Security", "Your account's protection and where you are signed in."), error,
    mfaBox, orgBox,
    h("div", { class: "card" }, h("h3", { text: "Sessions" }),
      table(["Browser", "IP address", "Last active", ""], rows, "Your sessions"),
      others ? h("button", { type: "button", class: "secondary", onclick: async () => {
        try {
          const r = await api.post(paths.revokeOthers);
          announce(r.revoked + " other sessions ended");
          reload();
        } catch (e) {
          showError(error, e);
        }
      } }, "Sign out everywhere else") : null));
}

function describeAgent(ua) {
  const s = String(ua || "");
  const browser = /Edg\//.test(s) ? "Edge" : /Firefox\//.test(s) ? "Firefox" : /Chrome\//.test(s) ? "Chrome" : /Safari\//.test(s) ? "Safari" : "Browser";
  const os = /Windows/.test(s) ? "Windows" : /Mac OS X/.test(s) ? "macOS" : /Android/.test(s) ? "Android" : /iPhone|iPad/.test(s) ? "iOS" : /Linux/.test(s) ? "Linux" : "";
  return browser + (os ? " on " + os : "") + " ";
}

function codeInput() {
  return h("input", { class: "input", type: "text", autocomplete: "one-time-code", inputmode: "numeric", maxlength: "40", required: true, autofocus: true });
}

function recoveryList(codes) {
  const text = codes.join("\n");
  return h("div", { class: "recovery" },
    h("p", { text: "Keep these recovery codes somewhere safe. Each works once if you lose your phone. They are shown only now." }),
    h("ol", { class: "codes" }, codes.map((c) => h("li", null, h("code", { text: c })))),
    copyButton(() => text, "Copy codes"));
}

function enableDialog(ctx, setup) {
  return modal("Set up two-factor authentication", (close) => {
    const code = codeInput();
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "primary" }, "Turn on");
    const body = h("div", null,
      h("ol", { class: "steps" },
        h("li", null, "Scan this code with your authenticator app:",
          h("div", { class: "qr-wrap" }, qrSvg(setup.otpauth_uri, "QR code to add Convot to your authenticator app")),
          h("p", { class: "hint", text: "Cannot scan? Type this key instead, or open the link on your phone:" }),
          h("p", { class: "secret" }, h("code", { text: setup.secret.replace(/(.{4})/g, "$1 ").trim() }), " ", copyButton(() => setup.secret)),
          h("p", null, h("a", { href: setup.otpauth_uri }, "Open in authenticator app"))),
        h("li", null, "Enter the 6-digit code it shows.")));
    const form = h("form", { novalidate: true }, field("6-digit code", code), error,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(submit, async () => {
        try {
          const result = await ctx.api.post(paths.totpEnable, { code: code.value.trim(), revoke_other_sessions: true });
          replace(body, recoveryList(result.recovery_codes),
            h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: () => close(true) }, "I have saved them")));
          form.remove();
          announce("Two-factor authentication is on");
        } catch (e) {
          code.value = "";
          showError(error, e);
        }
      });
    });
    return h("div", null, body, form);
  }, { wide: true });
}

function disableDialog(ctx) {
  return modal("Turn off two-factor authentication", (close) => {
    const code = codeInput();
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "danger" }, "Turn off");
    const form = h("form", { novalidate: true }, h("p", { text: "Your account will only be protected by its password." }),
      field("Authenticator or recovery code", code), error,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(submit, async () => {
        try {
          await ctx.api.post(paths.totpDisable, { code: code.value.trim(), revoke_other_sessions: true });
          ctx.app.session.mfa_enabled = false;
          announce("Two-factor authentication is off");
          close(true);
        } catch (e) {
          code.value = "";
          showError(error, e);
        }
      });
    });
    return form;
  });
}

function recoveryDialog(ctx) {
  return modal("New recovery codes", (close) => {
    const code = codeInput();
    const error = errorLine();
    const submit = h("button", { type: "submit", class: "primary" }, "Replace codes");
    const wrap = h("div", null);
    const form = h("form", { novalidate: true }, h("p", { text: "Your current recovery codes stop working." }),
      field("Authenticator code", code), error,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(submit, async () => {
        try {
          const result = await ctx.api.post(paths.recoveryCodes, { code: code.value.trim() });
          replace(wrap, recoveryList(result.recovery_codes),
            h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: () => close(true) }, "Done")));
        } catch (e) {
          code.value = "";
          showError(error, e);
        }
      });
    });
    wrap.append(form);
    return wrap;
  }, { wide: true });
}
