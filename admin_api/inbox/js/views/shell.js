// The frame around the signed-in pages: navigation, organisation switcher, availability, the
// connection banner and the user menu; the inbox and settings views inside it.
import { h, icon, replace, announce } from "../dom.js";
import { AVAILABILITY_LABELS, initials } from "../format.js";
import { href } from "../router.js";
import { InboxView } from "./inbox.js";
import { SettingsView } from "./settings.js";
import { BILLING_BANNERS } from "./settings_billing.js";

const BANNERS = {
  connecting: null,
  reconnecting: "Reconnecting…",
  waiting: "Connection lost. Reconnecting…",
  authenticating: null,
  ready: null,
  stopped: "Disconnected from live updates. Reload the page to reconnect.",
  signed_out: null,
};

export class Shell {
  constructor(app) {
    this.app = app;
    this.ws = app.workspace;
    this.inbox = null;
    this.settings = null;
    this.banner = h("div", { class: "banner", role: "status", aria: { live: "polite" }, hidden: true });
    this.notice = app.notice || null;       // e.g. "You no longer have access to …" after a removal
    app.notice = null;
    this.main = h("main", { class: "main", id: "main", tabindex: "-1" });
    this.navInbox = h("a", { class: "nav-link", href: href("inbox"), aria: { label: "Inbox" } }, icon("inbox"), h("span", { text: "Inbox" }),
      this.unreadBadge = h("span", { class: "nav-badge", hidden: true }));
    this.navSettings = h("a", { class: "nav-link", href: href("settings"), aria: { label: "Settings" } }, icon("settings"), h("span", { text: "Settings" }));
    this.el = h("div", { class: "shell" },
      h("a", { class: "skip-link", href: "#main" }, "Skip to content"),
      h("nav", { class: "rail", aria: { label: "Main" } },
        h("span", { class: "brand-mark", aria: { hidden: "true" } }, "C"),
        this.navInbox, this.navSettings,
        h("div", { class: "rail-bottom" }, this.availabilityControl(), this.userMenu())),
      h("div", { class: "workarea" }, this.banner, this.orgBar(), this.main));
    this.onConnection = (e) => this.setBanner(e.detail.state);
    this.onList = () => this.updateUnread();
    this.ws.addEventListener("connection", this.onConnection);
    this.ws.addEventListener("list", this.onList);
    if (this.ws.connection) this.setBanner(this.ws.connection.state);
    if (app.org.mfaBlocked) this.setBannerText("This organisation requires two-factor authentication. Turn it on below to open the inbox.");
    else this.loadBillingBanner();
  }

  destroy() {
    delete document.documentElement.dataset.connection;
    this.ws.removeEventListener("connection", this.onConnection);
    this.ws.removeEventListener("list", this.onList);
    this.ws.removeEventListener("presence", this.onPresence);
    if (this.inbox) this.inbox.destroy();
    if (this.settings) this.settings.destroy();
  }

  orgBar() {
    const orgs = this.app.me.organisations;
    if (orgs.length < 2) return null;
    const select = h("select", { class: "input compact", aria: { label: "Organisation" } },
      orgs.map((o) => h("option", { value: o.org_id, selected: o.org_id === this.app.org.id }, o.name)));
    select.addEventListener("change", () => this.app.switchOrg(select.value));
    return h("div", { class: "org-bar" }, select);
  }

  availabilityControl() {
    const ws = this.ws;
    const select = h("select", { class: "availability", aria: { label: "Your availability" } },
      ["online", "busy", "offline"].map((s) => h("option", { value: s }, AVAILABILITY_LABELS[s])));
    const sync = () => {
      select.value = ws.myChoice || "offline";
      select.dataset.state = select.value;
    };
    select.addEventListener("change", async () => {
      const previous = ws.myChoice;
      select.dataset.state = select.value;
      try {
        await ws.setAvailability(select.value);
        announce("You are " + AVAILABILITY_LABELS[select.value].toLowerCase());
      } catch (e) {
        ws.myChoice = previous;
        sync();
        announce("Your availability could not be changed.");
      }
    });
    this.onPresence = (e) => { if (!e.detail.id || e.detail.id === ws.me.id) sync(); };
    ws.addEventListener("presence", this.onPresence);
    sync();
    this.availability = select;
    return h("div", { class: "availability-wrap", title: "Online: new conversations can be assigned to you" },
      h("span", { class: "dot", aria: { hidden: "true" } }), select);
  }

  userMenu() {
    const me = this.app.me;
    const button = h("button", { type: "button", class: "user-button", aria: { haspopup: "true", expanded: "false", label: "Account: " + (me.name || me.email) } },
      h("span", { class: "avatar avatar-small", aria: { hidden: "true" } }, initials(me.name || me.email)));
    const menu = h("div", { class: "menu", role: "menu", hidden: true },
      h("p", { class: "menu-head" }, h("strong", { text: me.name || me.email }), h("span", { text: me.email })),
      h("a", { role: "menuitem", href: href("settings", { section: "security" }) }, "Security"),
      h("a", { role: "menuitem", href: href("settings", { section: "notifications" }) }, "Notifications"),
      h("button", { type: "button", role: "menuitem", onclick: () => this.app.signOut() }, "Sign out"));
    const toggle = (open) => {
      menu.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      if (open) menu.querySelector("[role=menuitem]").focus();
    };
    button.addEventListener("click", () => toggle(menu.hidden));
    menu.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { toggle(false); button.focus(); }
    });
    document.addEventListener("click", (e) => { if (!menu.hidden && !menu.contains(e.target) && !button.contains(e.target)) toggle(false); });
    menu.addEventListener("click", (e) => { if (e.target.closest("a")) toggle(false); });
    return h("div", { class: "user" }, button, menu);
  }

  setBanner(state) {
    // Also on the root element: styles and tests can tell whether the inbox is live.
    document.documentElement.dataset.connection = state;
    if (BANNERS[state]) this.setBannerText(BANNERS[state], state === "stopped" ? "error" : "warning");
    else this.showQuietBanner();
  }

  // Billing (every member): while a payment failed the organisation keeps chatting and sees
  // this under the connection banner's place (the connection's own messages take precedence).
  async loadBillingBanner() {
    try {
      const answer = await this.app.api.get("/v1/orgs/" + this.app.org.id + "/billing/banner");
      this.billingBanner = answer && answer.banner ? BILLING_BANNERS[answer.banner] || null : null;
    } catch (e) {
      this.billingBanner = null;
    }
    if (!this.ws.connection || !BANNERS[this.ws.connection.state]) this.showQuietBanner();
  }

  // What the banner says while the connection is fine: the billing warning, else a notice.
  showQuietBanner() {
    if (this.billingBanner) this.setBannerText(this.billingBanner, "warning");
    else this.setBannerText(this.notice, "info");
  }

  setBannerText(text, kind = "warning") {
    this.banner.hidden = !text;
    this.banner.className = "banner banner-" + kind;
    this.banner.textContent = text || "";
  }

  updateUnread() {
    const n = this.ws.unreadTotal();
    this.unreadBadge.hidden = !n;
    this.unreadBadge.textContent = n > 99 ? "99+" : String(n);
    this.navInbox.setAttribute("aria-label", n ? "Inbox, " + n + " unread" : "Inbox");
  }

  show(route) {
    const inSettings = route.name === "settings" || this.app.org.mfaBlocked;
    this.navInbox.classList.toggle("active", !inSettings);
    this.navSettings.classList.toggle("active", inSettings);
    if (!inSettings) this.navInbox.setAttribute("aria-current", "page"); else this.navInbox.removeAttribute("aria-current");
    if (inSettings) this.navSettings.setAttribute("aria-current", "page"); else this.navSettings.removeAttribute("aria-current");
    if (inSettings) {
      if (this.inbox) { this.inbox.destroy(); this.inbox = null; }
      if (!this.settings) {
        this.settings = new SettingsView(this.app);
        replace(this.main, this.settings.el);
      }
      this.settings.show(this.app.org.mfaBlocked ? { name: "settings", params: { section: "security" } } : route);
    } else {
      if (this.settings) { this.settings.destroy(); this.settings = null; }
      if (!this.inbox) {
        this.inbox = new InboxView(this.app);
        replace(this.main, this.inbox.el);
      }
      this.inbox.show(route);
    }
    this.updateUnread();
  }
}
