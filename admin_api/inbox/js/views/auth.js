// Pages before the inbox: sign in (with the MFA step), sign up, email verification, password
// reset, invitations, email change, the first organisation; and the re-authentication dialog.
import { ApiError, paths } from "../api.js";
import { busy, field, fieldError, h, modal } from "../dom.js";
import { href, takeFragmentToken } from "../router.js";

function card(title, ...children) {
  return h("main", { class: "auth", id: "main" },
    h("div", { class: "auth-card" },
      h("p", { class: "brand" }, h("span", { class: "brand-mark", aria: { hidden: "true" } }, "C"), "Convot"),
      h("h1", { text: title }),
      ...children));
}

function alertBox() {
  return h("div", { class: "alert", role: "alert", hidden: true });
}

function showAlert(box, message, kind = "error") {
  box.hidden = !message;
  box.className = "alert alert-" + kind;
  box.textContent = message || "";
}

// Puts a server validation error on its field when it names one, else in the alert box.
function showError(box, error, controls = {}) {
  if (error instanceof ApiError && error.field && controls[error.field]) {
    fieldError(controls[error.field], (error.details.reason ? "This " + error.details.reason : error.message));
    controls[error.field].focus();
    showAlert(box, "");
    return;
  }
  showAlert(box, error.message || "Something went wrong.");
}

function input(attrs) {
  return h("input", { class: "input", ...attrs });
}

export function loginPage(app) {
  const email = input({ type: "email", name: "email", autocomplete: "username", required: true, autofocus: true });
  const password = input({ type: "password", name: "password", autocomplete: "current-password", required: true });
  const box = alertBox();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Sign in");
  const form = h("form", { novalidate: true },
    field("Email", email), field("Password", password), box, submit);
  if (app.notice) {
    showAlert(box, app.notice, "info");
    app.notice = null;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    fieldError(email, "");
    fieldError(password, "");
    if (!email.value.trim()) return fieldError(email, "Enter your email address.") || email.focus();
    if (!password.value) return fieldError(password, "Enter your password.") || password.focus();
    busy(submit, async () => {
      try {
        const result = await app.api.post(paths.login, { email: email.value.trim(), password: password.value }, { quiet401: true });
        password.value = "";
        if (result.mfa_required) {
          app.replaceMain(mfaStep(app));
          return;
        }
        await app.signedIn();
      } catch (err) {
        if (err.code === "email_unverified") showAlert(box, "Confirm your email address first: we just sent you a new link.", "info");
        else showError(box, err, { email, password });
      }
    });
  });
  return card("Sign in to your inbox", form,
    h("p", { class: "auth-links" },
      h("a", { href: href("forgot-password") }, "Forgot your password?"), " · ",
      h("a", { href: href("signup") }, "Create an account")));
}

export function mfaStep(app) {
  let recovery = false;
  const code = input({ type: "text", name: "code", autocomplete: "one-time-code", inputmode: "numeric", pattern: "[0-9 ]*",
                       maxlength: "40", required: true, autofocus: true });
  const label = h("label", { for: "mfa-code", text: "6-digit code from your authenticator app" });
  code.id = "mfa-code";
  const box = alertBox();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Verify");
  const toggle = h("button", { type: "button", class: "link" }, "Use a recovery code instead");
  toggle.addEventListener("click", () => {
    recovery = !recovery;
    label.textContent = recovery ? "Recovery code" : "6-digit code from your authenticator app";
    code.inputMode = recovery ? "text" : "numeric";
    code.removeAttribute("pattern");
    if (!recovery) code.setAttribute("pattern", "[0-9 ]*");
    toggle.textContent = recovery ? "Use an authenticator code instead" : "Use a recovery code instead";
    code.value = "";
    code.focus();
  });
  const form = h("form", { novalidate: true }, h("div", { class: "field" }, label, code), box, submit);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (code.value.trim().length < 6) {
      showAlert(box, recovery ? "Enter one of your recovery codes." : "Enter the 6 digits your app shows.");
      code.focus();
      return;
    }
    busy(submit, async () => {
      try {
        await app.api.post(paths.mfa, { code: code.value.trim() }, { quiet401: true });
        await app.signedIn();
      } catch (err) {
        code.value = "";
        code.focus();
        if (err.code === "unauthorized") {
          app.notice = "Your sign-in expired: start again.";
          app.go(href("login"));
        } else showError(box, err);
      }
    });
  });
  return card("Two-factor authentication", h("p", { class: "lead", text: "Your account is protected with a second step." }),
    form, h("p", { class: "auth-links" }, toggle, " · ",
      h("button", { type: "button", class: "link", onclick: () => app.signOut() }, "Cancel")));
}

export function signupPage(app) {
  const name = input({ type: "text", name: "name", autocomplete: "name", maxlength: "200", autofocus: true });
  const email = input({ type: "email", name: "email", autocomplete: "email", required: true });
  const password = input({ type: "password", name: "password", autocomplete: "new-password", required: true, minlength: "10" });
  const box = alertBox();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Create account");
  const form = h("form", { novalidate: true }, field("Your name", name), field("Email", email),
    field("Password", password, "At least 10 characters."), box, submit);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    fieldError(email, "");
    fieldError(password, "");
    if (!email.value.trim()) return fieldError(email, "Enter your email address.") || email.focus();
    if (password.value.length < 10) return fieldError(password, "Use at least 10 characters.") || password.focus();
    busy(submit, async () => {
      try {
        await app.api.post(paths.signup, { email: email.value.trim(), password: password.value, name: name.value.trim() });
        password.value = "";
        form.replaceWith(h("div", { class: "alert alert-info", role: "status" },
          "Check your mailbox: we sent a link to confirm " + email.value.trim() + "."));
      } catch (err) {
        showError(box, err, { email, password, name });
      }
    });
  });
  return card("Create your account", form, h("p", { class: "auth-links" }, "Have an account? ", h("a", { href: href("login") }, "Sign in")));
}

export function forgotPage(app) {
  const email = input({ type: "email", name: "email", autocomplete: "username", required: true, autofocus: true });
  const box = alertBox();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Send reset link");
  const form = h("form", { novalidate: true }, field("Email", email), box, submit);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!email.value.trim()) return fieldError(email, "Enter your email address.") || email.focus();
    busy(submit, async () => {
      try {
        await app.api.post(paths.resetRequest, { email: email.value.trim() });
        form.replaceWith(h("div", { class: "alert alert-info", role: "status" },
          "If an account uses this address, a reset link is on its way."));
      } catch (err) {
        showError(box, err, { email });
      }
    });
  });
  return card("Reset your password", form, h("p", { class: "auth-links" }, h("a", { href: href("login") }, "Back to sign in")));
}

function tokenPage(app, title, pending, work) {
  const token = takeFragmentToken(location, history) || app.pendingToken;
  app.pendingToken = token;
  const box = h("div", { class: "alert alert-info", role: "status", text: pending });
  const page = card(title, box);
  if (!token) {
    showAlert(box, "This link is incomplete. Open the link from the mail again.");
    return page;
  }
  work(token, box, page);
  return page;
}

export function resetPage(app) {
  const token = takeFragmentToken(location, history) || app.pendingToken;
  app.pendingToken = token;
  const password = input({ type: "password", name: "new_password", autocomplete: "new-password", required: true, autofocus: true });
  const box = alertBox();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Set new password");
  const form = h("form", { novalidate: true }, field("New password", password, "At least 10 characters."), box, submit);
  if (!token) showAlert(box, "This link is incomplete. Open the link from the mail again.");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (password.value.length < 10) return fieldError(password, "Use at least 10 characters.") || password.focus();
    busy(submit, async () => {
      try {
        await app.api.post(paths.reset, { token, new_password: password.value });
        app.pendingToken = null;
        app.notice = "Your password is changed: sign in with it.";
        app.go(href("login"));
      } catch (err) {
        showError(box, err, { new_password: password });
      }
    });
  });
  return card("Choose a new password", form);
}

export function verifyPage(app) {
  return tokenPage(app, "Confirm your email", "Confirming…", async (token, box) => {
    try {
      await app.api.post(paths.verifyEmail, { token });
      app.pendingToken = null;
      showAlert(box, "Your email address is confirmed.", "success");
      box.after(h("p", null, h("a", { class: "button primary", href: href("login") }, "Sign in")));
    } catch (err) {
      showError(box, err);
    }
  });
}

export function confirmEmailPage(app) {
  return tokenPage(app, "Confirm your new email", "Confirming…", async (token, box) => {
    try {
      await app.api.post(paths.confirmEmail, { token });
      app.pendingToken = null;
      showAlert(box, "Your account now uses this address.", "success");
      box.after(h("p", null, h("a", { class: "button primary", href: href("inbox") }, "Open the inbox")));
    } catch (err) {
      showError(box, err);
    }
  });
}

export function acceptInvitePage(app) {
  return tokenPage(app, "Join your team", "Reading the invitation…", async (token, box, page) => {
    let invite;
    try {
      invite = await app.api.post(paths.inspectInvite, { token });
    } catch (err) {
      showError(box, err);
      return;
    }
    showAlert(box, "");
    const signedIn = app.session && !app.session.mfa_pending;
    const join = h("button", { type: "button", class: "primary wide" }, "Join " + invite.organisation);
    const info = h("p", { class: "lead" }, "You are invited to ", h("strong", { text: invite.organisation }), " as ",
      invite.role, " (for ", h("strong", { text: invite.email }), ").");
    box.before(info);
    if (!signedIn) {
      box.after(h("p", null, "Sign in or create an account with that address, then open the link again."),
        h("p", { class: "auth-links" }, h("a", { href: href("login") }, "Sign in"), " · ", h("a", { href: href("signup") }, "Create an account")));
      return;
    }
    join.addEventListener("click", () => busy(join, async () => {
      try {
        const org = await app.api.post(paths.acceptInvite, { token });
        app.pendingToken = null;
        app.selectOrg(org.id);
        await app.signedIn();
      } catch (err) {
        showError(box, err);
      }
    }));
    box.after(join);
  });
}

export function welcomePage(app) {
  const name = input({ type: "text", name: "name", maxlength: "200", required: true, autofocus: true, placeholder: "Acme Apps" });
  const box = alertBox();
  const submit = h("button", { type: "submit", class: "primary wide" }, "Create organisation");
  const form = h("form", { novalidate: true }, field("Organisation name", name, "Usually your company or app studio."), box, submit);
  if (app.notice) {
    showAlert(box, app.notice, "info");    // e.g. "You no longer have access to …" after a removal
    app.notice = null;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!name.value.trim()) return fieldError(name, "Give your organisation a name.") || name.focus();
    busy(submit, async () => {
      try {
        const org = await app.api.post(paths.orgs, { name: name.value.trim() });
        app.selectOrg(org.id);
        await app.signedIn();
      } catch (err) {
        showError(box, err, { name });
      }
    });
  });
  return card("Welcome to Convot", h("p", { class: "lead", text: "Create your organisation to start answering your users. "
    + "If a teammate invited you, open the link in their invitation instead." }), form,
    h("p", { class: "auth-links" }, h("button", { type: "button", class: "link", onclick: () => app.signOut() }, "Sign out")));
}

// Sensitive changes need a recent password (and code): asked for in a dialog, then retried.
export function reauthDialog(app) {
  const mfa = !!(app.session && app.session.mfa_enabled);
  return modal("Confirm it's you", (close) => {
    const password = input({ type: "password", autocomplete: "current-password", required: true, autofocus: true });
    const code = input({ type: "text", autocomplete: "one-time-code", inputmode: "numeric", maxlength: "40" });
    const box = alertBox();
    const submit = h("button", { type: "submit", class: "primary" }, "Confirm");
    const form = h("form", { novalidate: true },
      h("p", { text: "This change needs your password" + (mfa ? " and a code from your authenticator app." : ".") }),
      field("Password", password), mfa ? field("Authenticator or recovery code", code) : null, box,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"), submit));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(submit, async () => {
        try {
          const body = { password: password.value };
          if (mfa && code.value.trim()) body.code = code.value.trim();
          await app.api.post(paths.reauth, body, { retried: true });
          close(true);
        } catch (err) {
          password.value = "";
          showError(box, err);
          password.focus();
        }
      });
    });
    return form;
  });
}
