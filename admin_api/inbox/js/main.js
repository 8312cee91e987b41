// The inbox application: session and organisation, routing between the pages, and the
// workspace (data + live socket) of the signed-in member. See docs/inbox.md.
import { Api, ApiError, paths } from "./api.js";
import { h, replace } from "./dom.js";
import { Notifier } from "./notify.js";
import { href, Router } from "./router.js";
import { Workspace } from "./workspace.js";
import * as auth from "./views/auth.js";
import { Shell } from "./views/shell.js";

const ORG_KEY = "convot-inbox:org";

function savedOrg() {
  try { return localStorage.getItem(ORG_KEY); } catch (e) { return null; }
}

class App {
  constructor(root) {
    this.root = root;
    this.api = new Api();
    this.notifier = new Notifier();
    this.session = null;
    this.me = null;
    this.org = null;
    this.workspace = null;
    this.shell = null;
    this.notice = null;
    this.next = null;
    this.gatewayUrl = (document.querySelector('meta[name="convot-gateway"]') || {}).content || "";
    this.api.onSignedOut = () => this.signedOut("Your session ended: sign in again.");
    this.api.onReauth = () => auth.reauthDialog(this);
    this.router = new Router((route) => this.show(route));
    // Extension points for other parts of Convot (docs/inbox.md): panels in the sidebar.
    window.ConvotInbox = window.ConvotInbox || { panels: {} };
  }

  go(path, opts) {
    this.router.go(path, opts);
  }

  replaceMain(el) {
    if (this.shell) { this.shell.destroy(); this.shell = null; }
    replace(this.root, el);
    const heading = el.querySelector("h1");
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }

  selectOrg(id) {
    try { localStorage.setItem(ORG_KEY, id); } catch (e) { /* memory only */ }
    this.wantedOrg = id;
  }

  async boot() {
    await this.loadSession();
    this.show(this.router.current);
  }

  async loadSession() {
    try {
      this.session = await this.api.get(paths.session, { quiet401: true });
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.session = null;
    }
    this.me = null;
    if (this.session && !this.session.mfa_pending) {
      try {
        this.me = await this.api.get(paths.me, { quiet401: true });
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        this.session = null;
      }
    }
  }

  get signedInFully() {
    return !!(this.session && !this.session.mfa_pending && this.me);
  }

  async show(route) {
    document.documentElement.dataset.route = route.name;
    if (route.public) {
      if (this.signedInFully && (route.name === "login" || route.name === "signup")) return this.go(href("inbox"), { replace: true });
      if (route.name === "login" && this.session && this.session.mfa_pending) return this.replaceMain(auth.mfaStep(this));
      const pages = { login: auth.loginPage, signup: auth.signupPage, "forgot-password": auth.forgotPage,
                      "reset-password": auth.resetPage, "verify-email": auth.verifyPage, "accept-invite": auth.acceptInvitePage };
      const page = pages[route.name];
      if (page) return this.replaceMain(page(this));
      return this.replaceMain(h("main", { class: "auth", id: "main" }, h("div", { class: "auth-card" },
        h("h1", { text: "Page not found" }), h("p", null, h("a", { href: href("inbox") }, "Go to the inbox")))));
    }
    if (!this.session) {
      this.next = location.pathname;
      return this.go(href("login"), { replace: true });
    }
    if (this.session.mfa_pending) return this.replaceMain(auth.mfaStep(this));
    if (route.name === "confirm-email") return this.replaceMain(auth.confirmEmailPage(this));
    if (!this.me) await this.loadSession();
    if (!this.me) return this.go(href("login"), { replace: true });
    if (!this.me.organisations.length || route.name === "welcome") {
      if (this.me.organisations.length && route.name === "welcome") return this.go(href("inbox"), { replace: true });
      this.stopWorkspace();
      return this.replaceMain(auth.welcomePage(this));
    }
    if (!(await this.ensureWorkspace())) return;
    if (!this.shell) {
      this.shell = new Shell(this);
      replace(this.root, this.shell.el);
    }
    this.shell.show(route);
  }

  // The organisation to work in: the one chosen last (if still a member), else the first.
  pickOrg() {
    const orgs = this.me.organisations;
    const wanted = this.wantedOrg || savedOrg();
    return orgs.find((o) => o.org_id === wanted) || orgs[0];
  }

  async ensureWorkspace() {
    const membership = this.pickOrg();
    if (this.workspace && this.org && this.org.id === membership.org_id) return true;
    this.stopWorkspace();
    if (membership.mfa_enrollment_required) {
      this.org = { id: membership.org_id, name: membership.name, role: membership.role, permissions: [], mfaBlocked: true };
    } else {
      try {
        this.org = await this.api.get(paths.org(membership.org_id));
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        if (e.code === "mfa_enrollment_required") {
          this.org = { id: membership.org_id, name: membership.name, role: membership.role, permissions: [], mfaBlocked: true };
        } else if (e.code === "not_found") {
          await this.loadSession();
          this.wantedOrg = null;
          this.show(this.router.current);
          return false;
        } else {
          throw e;
        }
      }
    }
    this.selectOrg(this.org.id);
    const me = { id: this.me.id, email: this.me.email, name: this.me.name };
    this.workspace = new Workspace({ api: this.api, me, org: this.org, notifier: this.notifier, gatewayUrl: this.gatewayUrl,
                                     openConversation: (id) => this.go(href("conversation", { id })) });
    this.workspace.addEventListener("signed_out", () => this.accessLost());
    if (!this.org.mfaBlocked) await this.workspace.start();
    return true;
  }

  stopWorkspace() {
    if (this.shell) { this.shell.destroy(); this.shell = null; }
    if (this.workspace) { this.workspace.stop(); this.workspace = null; }
    this.org = null;
  }

  async switchOrg(id) {
    this.selectOrg(id);
    this.stopWorkspace();
    await this.show({ name: "inbox", params: {}, public: false });
    history.pushState(null, "", href("inbox"));
  }

  async signedIn() {
    await this.loadSession();
    this.stopWorkspace();
    const next = this.next && this.next.startsWith("/app/") && !/\/app\/(login|signup)/.test(this.next) ? this.next : href("inbox");
    this.next = null;
    this.go(next, { replace: true });
  }

  // The gateway closed the socket for good (member removed, organisation deleted, signed out
  // elsewhere): find out whether the session still stands; if not, back to the sign-in page at
  // once. If it does, the organisation is gone from this person's list: say so and go on in
  // their next organisation (or the welcome page when there is none).
  async accessLost() {
    const lost = this.org;
    try {
      await this.api.get(paths.session, { quiet401: true });
      this.me = await this.api.get(paths.me, { quiet401: true });
      const still = lost && this.me.organisations.some((o) => o.org_id === lost.id);
      this.stopWorkspace();
      this.notice = lost && !still ? "You no longer have access to " + lost.name + "." : null;
      this.show(this.router.current);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.signedOut("You were signed out: your access to this organisation changed.");
    }
  }

  signedOut(message) {
    if (!this.session && !this.workspace) return;
    this.stopWorkspace();
    this.session = null;
    this.me = null;
    this.notice = message || null;
    this.notifier.setUnread(0);
    this.go(href("login"), { replace: true });
  }

  async signOut() {
    if (this.workspace) this.workspace.forgetLocalData();
    try {
      await this.api.post(paths.logout, undefined, { quiet401: true });
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
    this.session = { signingOut: true };
    this.signedOut("You are signed out.");
  }
}

const app = new App(document.getElementById("app"));
window.addEventListener("unhandledrejection", (e) => {
  // Errors of the API are shown where they happen; anything else is a bug worth a console line.
  if (e.reason instanceof ApiError) e.preventDefault();
});
app.boot();
