// The inbox: the conversation list (views Mine / Unassigned / All, filters, search) beside the
// open conversation and the contact sidebar. The list updates live from the workspace's events;
// rows are kept by conversation id and patched, never rebuilt wholesale.
import { ApiError, paths } from "../api.js";
import { avatar, clear, h, icon, replace } from "../dom.js";
import { hueOf, initials, shortAgo, STATUS_LABELS } from "../format.js";
import { href } from "../router.js";
import { defaultFilter, filterQuery, normaliseConversation, STATUS_FILTERS } from "../store.js";
import { ConversationView } from "./conversation.js";
import { SidebarView } from "./sidebar.js";

const VIEW_LABELS = { mine: "Mine", unassigned: "Unassigned", all: "All" };

// The searched words marked in a snippet (<mark> elements around text nodes).
function highlight(text, terms) {
  const words = terms.filter(Boolean).map((t) => t.toLowerCase());
  if (!words.length) return [text];
  const out = [];
  for (const part of text.split(/(\s+)/)) {
    const lower = part.toLowerCase().replace(/^[^\p{L}\p{N}]+/u, "");
    out.push(words.some((w) => lower.startsWith(w)) ? h("mark", null, part) : part);
  }
  return out;
}
const FILTER_KEY = "convot-inbox:filter";

function savedFilter() {
  try {
    const f = JSON.parse(sessionStorage.getItem(FILTER_KEY) || "null");
    if (f && typeof f === "object") return { ...defaultFilter(), ...f };
  } catch (e) { /* ignore */ }
  return defaultFilter();
}

export class InboxView {
  constructor(app) {
    this.app = app;
    this.ws = app.workspace;
    this.rows = new Map();
    this.openId = null;
    this.filter = savedFilter();
    this.searchResults = null;
    this.frame = 0;

    this.viewLinks = {};
    const views = h("nav", { class: "views", aria: { label: "Views" } },
      ["mine", "unassigned", "all"].map((v) => {
        const count = h("span", { class: "count", hidden: true });
        const a = h("a", { href: href("inbox", { view: v }), class: "view-link", data: { view: v } }, VIEW_LABELS[v], count);
        this.viewLinks[v] = { a, count };
        return a;
      }));
    this.statusSelect = h("select", { class: "input compact", aria: { label: "Status" } },
      STATUS_FILTERS.map((s) => h("option", { value: s }, s === "all" ? "Any status" : STATUS_LABELS[s])));
    this.tagSelect = h("select", { class: "input compact", aria: { label: "Tag" } });
    this.appSelect = h("select", { class: "input compact", aria: { label: "App" } });
    for (const [select, key] of [[this.statusSelect, "status"], [this.tagSelect, "tag"], [this.appSelect, "app"]]) {
      select.addEventListener("change", () => this.setFilter({ [key]: select.value || null }));
    }
    this.search = h("input", { type: "search", class: "input compact", id: "inbox-search", placeholder: "Search conversations",
                               aria: { label: "Search conversations" }, autocomplete: "off" });
    const searchForm = h("form", { class: "search", role: "search" }, this.search);
    searchForm.addEventListener("submit", (e) => { e.preventDefault(); this.runSearch(this.search.value.trim()); });
    this.search.addEventListener("input", () => { if (!this.search.value.trim() && this.searchResults) this.runSearch(""); });

    this.list = h("ul", { class: "conv-list", aria: { label: "Conversations" } });
    this.empty = h("p", { class: "empty", hidden: true });
    this.more = h("button", { type: "button", class: "secondary small load-more", hidden: true, onclick: () => this.ws.loadPage() }, "Load more");
    this.listStatus = h("p", { class: "list-status", role: "status" });
    this.listPane = h("section", { class: "list-pane", aria: { label: "Conversation list" } },
      h("header", { class: "list-head" }, h("h1", { class: "visually-hidden", text: "Inbox" }), views, searchForm,
        h("div", { class: "filters" }, this.statusSelect, this.tagSelect, this.appSelect)),
      this.listStatus, this.list, this.empty, this.more);

    this.threadPane = h("section", { class: "thread-pane", aria: { label: "Conversation" } });
    this.sidePane = h("aside", { class: "side-pane", aria: { label: "Contact details" } });
    this.el = h("div", { class: "inbox" }, this.listPane, this.threadPane, this.sidePane);

    this.conversation = null;
    this.sidebar = null;
    this.listeners = [
      ["list", () => this.schedule()],
      ["list-loading", (e) => { this.listStatus.textContent = e.detail ? "Loading conversations…" : ""; }],
      ["contact", () => this.schedule()],
      ["apps", () => { this.fillApps(); this.schedule(); }],
      ["tags", () => this.fillTags()],
      ["members", () => this.schedule()],
      ["conversation", (e) => { if (e.detail.deleted && e.detail.id === this.openId) this.app.go(href("inbox", { view: this.filter.view })); }],
      ["ready", () => { if (!this.ws.filter) this.ws.setFilter(this.filter); }],
    ];
    for (const [type, fn] of this.listeners) this.ws.addEventListener(type, fn);
    this.fillApps();
    this.fillTags();
    this.syncControls();
    this.ws.setFilter(this.filter);
    this.showPlaceholder();
  }

  destroy() {
    for (const [type, fn] of this.listeners) this.ws.removeEventListener(type, fn);
    cancelAnimationFrame(this.frame);
    if (this.conversation) this.conversation.destroy();
    if (this.sidebar) this.sidebar.destroy();
    this.ws.close();
  }

  show(route) {
    if (route.name === "inbox" && route.params.view && route.params.view !== this.filter.view) this.setFilter({ view: route.params.view });
    const id = route.name === "conversation" ? route.params.id : null;
    this.el.classList.toggle("has-open", !!id);
    if (id === this.openId) return;
    this.openId = id;
    if (this.conversation) { this.conversation.destroy(); this.conversation = null; }
    if (this.sidebar) { this.sidebar.destroy(); this.sidebar = null; }
    if (!id) {
      this.ws.close();
      this.showPlaceholder();
    } else {
      this.conversation = new ConversationView(this.app, id);
      replace(this.threadPane, this.conversation.el);
      this.sidebar = new SidebarView(this.app, id);
      replace(this.sidePane, this.sidebar.el);
      this.conversation.focusComposer();
    }
    this.schedule();
  }

  showPlaceholder() {
    replace(this.threadPane, h("div", { class: "placeholder" }, icon("inbox"), h("p", { text: "Select a conversation" })));
    clear(this.sidePane);
  }

  setFilter(change) {
    this.filter = { ...this.filter, ...change };
    try { sessionStorage.setItem(FILTER_KEY, JSON.stringify(this.filter)); } catch (e) { /* ignore */ }
    this.syncControls();
    this.searchResults = null;
    this.ws.setFilter(this.filter);
    if (this.search.value.trim()) this.runSearch(this.search.value.trim());
    this.schedule();
  }

  syncControls() {
    for (const [v, { a }] of Object.entries(this.viewLinks)) {
      a.classList.toggle("active", v === this.filter.view);
      if (v === this.filter.view) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current");
    }
    this.statusSelect.value = this.filter.status || "all";
    this.tagSelect.value = this.filter.tag || "";
    this.appSelect.value = this.filter.app || "";
  }

  fillTags() {
    replace(this.tagSelect, h("option", { value: "" }, "Any tag"), this.ws.tags.map((t) => h("option", { value: t }, "#" + t)));
    this.tagSelect.value = this.filter.tag || "";
    this.tagSelect.hidden = !this.ws.tags.length && !this.filter.tag;
  }

  fillApps() {
    const apps = Array.from(this.ws.apps.values());
    replace(this.appSelect, h("option", { value: "" }, "Any app"), apps.map((a) => h("option", { value: a.id }, a.name)));
    this.appSelect.value = this.filter.app || "";
    this.appSelect.hidden = apps.length < 2 && !this.filter.app;
  }

  // Full-text search (admin_api/search.py): every word by prefix, in message text (notes
  // included) and the contact's name, email and company; the view's filters apply.
  async runSearch(query) {
    if (!query) {
      this.searchResults = null;
      this.listStatus.textContent = "";
      this.schedule();
      return;
    }
    const params = filterQuery(this.filter, this.ws.me.id);
    params.set("q", query);
    params.set("limit", "50");
    this.listStatus.textContent = "Searching…";
    try {
      const result = await this.app.api.get(paths.search(this.ws.orgId) + "?" + params.toString());
      const ids = [];
      const snippets = new Map();
      for (const item of result.items || []) {
        const conv = item.conversation;
        if (!conv || typeof conv.id !== "string") continue;
        if (!this.ws.conversations.get(conv.id)) this.ws.conversations.upsert(normaliseConversation(conv));
        if (!ids.includes(conv.id)) ids.push(conv.id);
        if (item.message && item.message.snippet && !snippets.has(conv.id)) snippets.set(conv.id, item.message.snippet);
      }
      this.searchResults = { query, ids, snippets, terms: result.terms || [] };
      this.listStatus.textContent = ids.length ? (ids.length === 1 ? "1 conversation" : ids.length + " conversations") + " found" : "";
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.searchResults = { query, ids: [], snippets: new Map(), terms: [], error: e.message };
      this.listStatus.textContent = "";
    }
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const ws = this.ws;
    const items = this.searchResults
      ? this.searchResults.ids.map((id) => ws.conversations.get(id)).filter(Boolean)
      : ws.visible();
    const seen = new Set();
    let previous = null;
    for (const c of items) {
      seen.add(c.id);
      let row = this.rows.get(c.id);
      if (!row) {
        row = this.row(c);
        this.rows.set(c.id, row);
      }
      this.patch(row, c);
      const next = previous ? previous.el.nextSibling : this.list.firstChild;
      if (next !== row.el) this.list.insertBefore(row.el, next);
      previous = row;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    const counts = ws.conversations.unreadByView(ws.me.id);
    for (const [v, { count }] of Object.entries(this.viewLinks)) {
      count.hidden = !counts[v];
      count.textContent = String(counts[v] || "");
      count.setAttribute("aria-label", counts[v] + " unread");
    }
    this.empty.hidden = items.length > 0 || ws.listLoading;
    this.empty.textContent = this.searchResults ? (this.searchResults.error || "Nothing matches “" + this.searchResults.query + "”.")
      : ws.listError ? "The conversations could not be loaded: " + ws.listError.message
      : "No conversations here yet.";
    this.more.hidden = !!this.searchResults || ws.listDone || ws.listLoading || !ws.filter;
  }

  row(c) {
    const name = h("span", { class: "conv-name" });
    const time = h("time", { class: "conv-time" });
    const preview = h("span", { class: "conv-preview" });
    const badge = h("span", { class: "unread-badge", hidden: true });
    const status = h("span", { class: "pill" });
    const assignee = h("span", { class: "conv-assignee" });
    const tags = h("span", { class: "conv-tags" });
    const av = avatar("", 0);
    const link = h("a", { class: "conv-link", href: href("conversation", { id: c.id }) },
      av, h("span", { class: "conv-main" },
        h("span", { class: "conv-top" }, name, time),
        h("span", { class: "conv-bottom" }, preview, badge),
        h("span", { class: "conv-meta" }, status, tags, assignee)));
    const el = h("li", { class: "conv", data: { id: c.id } }, link);
    return { el, link, name, time, preview, badge, status, assignee, tags, av, key: "" };
  }

  patch(row, c) {
    const ws = this.ws;
    const contactName = ws.contactLabel(c.contact_id);
    if (c.contact_id && !ws.contacts.has(c.contact_id)) ws.loadContact(c.contact_id).catch(() => {});
    const unread = ws.conversations.unreadOf(c.id);
    const p = c.preview;
    let text = "";
    if (p) {
      const prefix = p.deleted ? "" : p.type === "note" ? "Note: " : p.author_kind === "member" ? (p.author_id === ws.me.id ? "You: " : ws.memberName(p.author_id).split(" ")[0] + ": ") : "";
      text = p.deleted ? "Message deleted" : prefix + p.body.replace(/\s+/g, " ").slice(0, 140);
    }
    const snippet = this.searchResults && this.searchResults.snippets.get(c.id);
    if (snippet) text = snippet;
    const assigneeName = c.assignee_id ? ws.memberName(c.assignee_id) : "";
    const key = [contactName, c.last_at, text, unread, c.status, c.assignee_id, c.tags.join(","), c.id === this.openId, !!snippet].join("|");
    if (key === row.key) {
      row.time.textContent = shortAgo(c.last_at);
      return;
    }
    row.key = key;
    row.name.textContent = contactName;
    row.av.textContent = initials(contactName);
    row.av.dataset.hue = String(Math.floor(hueOf(c.contact_id || c.id) / 30) % 12);
    row.time.textContent = shortAgo(c.last_at);
    if (c.last_at) row.time.setAttribute("datetime", new Date(c.last_at).toISOString());
    if (snippet) replace(row.preview, highlight(snippet, this.searchResults.terms));
    else row.preview.textContent = text || "No messages yet";
    row.badge.hidden = !unread;
    row.badge.textContent = String(unread);
    row.status.hidden = c.status === "open";
    row.status.textContent = STATUS_LABELS[c.status] || c.status;
    row.status.className = "pill pill-" + c.status;
    row.assignee.textContent = assigneeName ? initials(assigneeName) : "";
    row.assignee.title = assigneeName ? "Assigned to " + assigneeName : "";
    row.assignee.hidden = !assigneeName;
    replace(row.tags, c.tags.slice(0, 3).map((t) => h("span", { class: "tag-chip small", text: "#" + t })));
    row.el.classList.toggle("unread", unread > 0);
    row.el.classList.toggle("active", c.id === this.openId);
    if (c.id === this.openId) row.link.setAttribute("aria-current", "page"); else row.link.removeAttribute("aria-current");
    const parts = [contactName, unread ? unread + " unread" : null, STATUS_LABELS[c.status], assigneeName ? "assigned to " + assigneeName : "unassigned", text];
    row.link.setAttribute("aria-label", parts.filter(Boolean).join(", "));
  }
}
