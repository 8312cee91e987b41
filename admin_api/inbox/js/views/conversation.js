// One conversation: header with its state and actions (assign, pending, resolve, reopen, tags),
// the messages (a live log), who is typing, and the composer with Reply and Note tabs and
// @mentions. Message text is only ever set as text.
import { ApiError } from "../api.js";
import { announce, avatar, busy, clear, confirmDialog, h, icon, replace } from "../dom.js";
import { clockTime, fullTime, hueOf, initials, linkSegments, memberName, mentionAt, mentionCandidates,
         mentionedIds, mentionSegments, normaliseTag, STATUS_LABELS } from "../format.js";
import { href } from "../router.js";

const NEAR_BOTTOM_PX = 120;

export class ConversationView {
  constructor(app, id) {
    this.app = app;
    this.ws = app.workspace;
    this.id = id;
    this.thread = this.ws.open(id);
    this.nodes = new Map();      // key -> element
    this.kind = "reply";
    this.picked = new Map();     // mentioned member id -> label typed
    this.mention = null;         // {start, query, items, index}

    this.title = h("h2", { class: "thread-title", id: "thread-title" });
    this.statusPill = h("span", { class: "pill" });
    this.assign = h("select", { class: "input compact", aria: { label: "Assignee" } });
    this.assign.addEventListener("change", () => this.act({ assignee_id: this.assign.value || null },
      this.assign.value ? "Assigned to " + this.ws.memberName(this.assign.value) : "Unassigned"));
    this.statusButtons = h("div", { class: "status-actions" });
    this.tagList = h("ul", { class: "tag-list", aria: { label: "Tags" } });
    this.tagInput = h("input", { class: "input compact tag-input", type: "text", placeholder: "Add tag", maxlength: "64",
                                 aria: { label: "Add a tag" }, list: "tag-options-" + id });
    this.tagOptions = h("datalist", { id: "tag-options-" + id });
    this.tagInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.addTag(this.tagInput.value);
      }
    });
    this.tagInput.addEventListener("change", () => { if (this.ws.tags.includes(this.tagInput.value)) this.addTag(this.tagInput.value); });
    this.actionError = h("p", { class: "action-error", role: "alert", hidden: true });
    const back = h("a", { class: "icon-button back-link", href: href("inbox"), aria: { label: "Back to the list" } }, icon("back"));
    this.header = h("header", { class: "thread-head" },
      h("div", { class: "thread-head-top" }, back, this.title, this.statusPill),
      h("div", { class: "thread-actions" }, h("label", { class: "inline-label" }, h("span", { text: "Assignee" }), this.assign), this.statusButtons),
      h("div", { class: "thread-tags" }, this.tagList, this.tagInput, this.tagOptions),
      this.actionError);

    this.older = h("button", { type: "button", class: "secondary small", hidden: true, onclick: () => this.loadOlder() }, "Load earlier messages");
    this.log = h("div", { class: "log", role: "log", aria: { live: "polite", relevant: "additions", labelledby: "thread-title" }, tabindex: "0" });
    this.scroller = h("div", { class: "messages" }, h("div", { class: "older" }, this.older), this.log);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 60) this.loadOlder();
      if (this.nearBottom()) this.read();
    });
    this.typingLine = h("p", { class: "typing", role: "status", aria: { live: "polite" } });

    this.tabs = {};
    const tablist = h("div", { class: "composer-tabs", role: "tablist", aria: { label: "Message type" } },
      ["reply", "note"].map((k) => {
        const tab = h("button", { type: "button", role: "tab", id: "tab-" + k, class: "tab", aria: { selected: String(k === "reply"), controls: "composer-input" },
                                  tabindex: k === "reply" ? "0" : "-1" }, k === "reply" ? "Reply" : "Note");
        tab.addEventListener("click", () => this.setKind(k));
        tab.addEventListener("keydown", (e) => {
          if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
            e.preventDefault();
            const next = this.kind === "reply" ? "note" : "reply";
            this.setKind(next);
            this.tabs[next].focus();
          }
        });
        this.tabs[k] = tab;
        return tab;
      }));
    this.input = h("textarea", { id: "composer-input", class: "composer-input", rows: "3", role: "combobox",
                                 aria: { labelledby: "tab-reply", autocomplete: "list", expanded: "false", controls: "mention-list" },
                                 placeholder: "Reply to the customer…  (Enter sends, Shift+Enter for a new line)" });
    this.mentionList = h("ul", { class: "mention-list", id: "mention-list", role: "listbox", hidden: true, aria: { label: "Mention a teammate" } });
    this.sendButton = h("button", { type: "submit", class: "primary send" }, icon("send"), h("span", { text: "Send" }));
    this.composer = h("form", { class: "composer", data: { kind: "reply" } }, tablist,
      h("div", { class: "composer-body" }, this.input, this.mentionList, this.sendButton),
      h("p", { class: "composer-hint", id: "composer-hint" }, "Notes are private: the customer never sees them. Type @ to mention a teammate."));
    this.composer.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener("keydown", (e) => this.keydown(e));
    this.input.addEventListener("input", () => this.typed());
    this.input.addEventListener("blur", () => setTimeout(() => this.closeMentions(), 150));

    this.el = h("div", { class: "thread", data: { id } }, this.header, this.scroller, this.typingLine, this.composer);

    this.listeners = [
      ["thread", (e) => { if (e.detail.id === this.id) this.renderMessages(e.detail); }],
      ["conversation", (e) => { if (e.detail.id === this.id) this.renderHead(); }],
      ["list", () => this.renderHead()],
      ["contact", () => this.renderHead()],
      ["members", () => { this.renderHead(); this.renderMessages({}); }],
      ["tags", () => this.renderHead()],
      ["presence", () => this.renderHead()],
      ["typing", (e) => { if (e.detail.id === this.id) this.renderTyping(); }],
      ["ready", () => { if (!this.thread.loaded) this.ws.open(this.id); }],
    ];
    for (const [type, fn] of this.listeners) this.ws.addEventListener(type, fn);
    this.onVisible = () => { if (document.visibilityState === "visible") this.read(); };
    document.addEventListener("visibilitychange", this.onVisible);
    window.addEventListener("focus", this.onVisible);
    this.renderHead();
    this.renderMessages({});
    this.renderTyping();
  }

  destroy() {
    for (const [type, fn] of this.listeners) this.ws.removeEventListener(type, fn);
    document.removeEventListener("visibilitychange", this.onVisible);
    window.removeEventListener("focus", this.onVisible);
    this.ws.setTyping(this.id, false, this.kind === "note");
  }

  focusComposer() {
    requestAnimationFrame(() => this.input.focus({ preventScroll: true }));
  }

  // --- header -----------------------------------------------------------------------------------

  // Called on every list change of the organisation: rebuilt only when something shown changed.
  renderHead() {
    const ws = this.ws;
    const c = ws.conversations.get(this.id);
    const sig = c ? [ws.contactLabel(c.contact_id), c.status, c.assignee_id, c.tags.join(","), ws.tags.length, ws.members.size,
                     Array.from(ws.members.keys()).map((id) => ws.availability.get(id)).join(",")].join("|") : "";
    if (sig && sig === this.headSig) return;
    this.headSig = sig;
    this.title.textContent = c ? ws.contactLabel(c.contact_id) : "Conversation";
    if (!c) {
      this.statusPill.hidden = true;
      return;
    }
    this.statusPill.hidden = false;
    this.statusPill.textContent = STATUS_LABELS[c.status] || c.status;
    this.statusPill.className = "pill pill-" + c.status;

    const options = [h("option", { value: "" }, "Unassigned")];
    const members = Array.from(ws.members.values()).sort((a, b) => memberName(a).localeCompare(memberName(b)));
    for (const m of members) {
      const state = ws.availability.get(m.user_id) || "offline";
      const label = memberName(m) + (m.user_id === ws.me.id ? " (you)" : "") + (state !== "online" ? " · " + state : "");
      options.push(h("option", { value: m.user_id }, label));
    }
    if (c.assignee_id && !ws.members.has(c.assignee_id)) options.push(h("option", { value: c.assignee_id }, "Former member"));
    if (document.activeElement !== this.assign) {
      replace(this.assign, options);
      this.assign.value = c.assignee_id || "";
    } else {
      this.headSig = null;    // not rebuilt while in use: again on the next change
    }

    const buttons = [];
    if (c.assignee_id !== ws.me.id) buttons.push(this.button("Assign to me", () => this.act({ assignee_id: ws.me.id }, "Assigned to you"), "secondary"));
    if (c.status !== "pending") buttons.push(this.button("Mark pending", () => this.act({ status: "pending" }, "Marked pending"), "secondary"));
    if (c.status === "resolved") buttons.push(this.button("Reopen", () => this.act({ status: "open" }, "Reopened"), "secondary"));
    else buttons.push(this.button("Resolve", () => this.act({ status: "resolved" }, "Resolved"), "primary", icon("check")));
    if (ws.org.role === "owner" || ws.org.role === "admin") {
      buttons.push(this.button("Delete", () => this.deleteConversation(), "danger-quiet", icon("trash")));
    }
    replace(this.statusButtons, buttons);

    replace(this.tagList, c.tags.map((t) => h("li", { class: "tag-chip" }, "#" + t,
      h("button", { type: "button", class: "chip-remove", aria: { label: "Remove tag " + t }, onclick: () => this.act({ remove_tags: [t] }, "Removed tag " + t) }, "×"))));
    replace(this.tagOptions, ws.tags.filter((t) => !c.tags.includes(t)).map((t) => h("option", { value: t })));
  }

  button(label, onclick, kind, iconEl) {
    const b = h("button", { type: "button", class: kind + " small" }, iconEl || null, label);
    b.addEventListener("click", () => busy(b, onclick));
    return b;
  }

  async act(changes, done) {
    this.actionError.hidden = true;
    try {
      await this.ws.update(this.id, changes);
      if (done) announce(done);
    } catch (e) {
      this.actionError.hidden = false;
      this.actionError.textContent = e.message;
      this.headSig = null;
      this.renderHead();
    }
  }

  addTag(raw) {
    const tag = normaliseTag(raw);
    this.tagInput.value = "";
    if (!tag) {
      this.actionError.hidden = false;
      this.actionError.textContent = "A tag needs letters or digits.";
      return;
    }
    if (!this.ws.tags.includes(tag)) this.ws.tags = [...this.ws.tags, tag].sort();
    this.act({ add_tags: [tag] }, "Tagged " + tag);
  }

  async deleteConversation() {
    const ok = await confirmDialog("Delete this conversation?", "It disappears for everyone, including the customer. This cannot be undone.",
                                   { confirm: "Delete conversation", danger: true });
    if (ok) await this.act({ delete: true }, "Conversation deleted");
  }

  // --- messages -----------------------------------------------------------------------------------

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  loadOlder() {
    if (!this.ws.loadOlder(this.id)) return;
    this.older.disabled = true;
    this.older.textContent = "Loading…";
  }

  renderMessages(detail) {
    const t = this.thread;
    const stick = this.nearBottom() || detail.history && !detail.older;
    const beforeHeight = this.scroller.scrollHeight;
    const beforeTop = this.scroller.scrollTop;
    if (t.missing) {
      replace(this.log, h("p", { class: "empty", text: "This conversation no longer exists." }));
      this.composer.hidden = true;
      return;
    }
    const entries = t.entries();
    const seen = new Set();
    const ownSeenSeq = t.seenSeq();
    // The latest of our replies the customer has read gets "Seen".
    let seenTarget = 0;
    for (const m of entries) if (m.seq && m.seq <= ownSeenSeq && m.type === "outgoing") seenTarget = m.seq;
    let previous = null;
    let lastAuthor = null;
    for (const m of entries) {
      const key = m.seq ? "s" + m.seq : "c" + m.cid;
      seen.add(key);
      const author = m.seq ? m.author_kind + ":" + m.author_id + ":" + m.type : "me:" + m.kind;
      const grouped = author === lastAuthor;
      lastAuthor = author;
      const sig = this.signature(m, grouped, m.seq === seenTarget);
      let node = this.nodes.get(key);
      if (!node || node.dataset.sig !== sig) {
        const fresh = this.message(m, grouped, m.seq === seenTarget);
        fresh.dataset.sig = sig;
        if (node) node.replaceWith(fresh);
        node = fresh;
        this.nodes.set(key, node);
      }
      // A queued message that got its seq: the outbox node goes, the stored one takes its place.
      const next = previous ? previous.nextSibling : this.log.firstChild;
      if (next !== node) this.log.insertBefore(node, next);
      previous = node;
    }
    for (const [key, node] of this.nodes) {
      if (!seen.has(key)) {
        node.remove();
        this.nodes.delete(key);
      }
    }
    this.older.hidden = !(t.loaded && t.more);
    this.older.disabled = !!t.historyPending;
    this.older.textContent = t.historyPending ? "Loading…" : "Load earlier messages";
    if (!t.loaded && !entries.length) replace(this.log, h("p", { class: "empty", text: "Loading messages…" }));
    else if (t.loaded && !entries.length) replace(this.log, h("p", { class: "empty", text: "No messages yet." }));
    else { const placeholder = this.log.querySelector(":scope > p.empty"); if (placeholder) placeholder.remove(); }
    if (detail.older) this.scroller.scrollTop = beforeTop + (this.scroller.scrollHeight - beforeHeight);
    else if (stick) this.scroller.scrollTop = this.scroller.scrollHeight;
    if (this.nearBottom()) this.read();
  }

  signature(m, grouped, seen) {
    if (!m.seq) return ["o", m.status, m.error, grouped].join("|");
    return ["m", m.deleted, grouped, seen, this.mayDelete(m), m.author_id && this.ws.memberName(m.author_id)].join("|");
  }

  mayDelete(m) {
    return this.ws.mayDelete(m);
  }

  authorName(m) {
    const ws = this.ws;
    if (m.author_kind === "contact") return ws.contactLabel(ws.conversations.get(this.id)?.contact_id || m.author_id);
    if (m.author_kind === "member") return m.author_id === ws.me.id ? "You" : ws.memberName(m.author_id);
    if (m.author_kind === "api") return "API";
    return "Convot";
  }

  message(m, grouped, seenHere) {
    const ws = this.ws;
    if (!m.seq) {
      // Typed, not yet acknowledged by the gateway.
      const note = m.kind === "note";
      const status = m.status === "failed"
        ? h("span", { class: "msg-status failed" }, (m.error || "Not sent") + " ",
            h("button", { type: "button", class: "link", onclick: () => ws.retry(this.id, m.cid) }, "Retry"), " · ",
            h("button", { type: "button", class: "link", onclick: () => ws.discard(this.id, m.cid) }, "Discard"))
        : h("span", { class: "msg-status" }, "Sending…");
      return h("div", { class: ["msg", note ? "msg-note" : "msg-outgoing", "msg-mine", "pending", grouped && "grouped"], data: { cid: m.cid } },
        h("div", { class: "msg-body" },
          h("div", { class: "bubble" }, this.body(m.body, note)), h("div", { class: "msg-foot" }, status)));
    }
    if (m.type === "activity") {
      return h("div", { class: "msg msg-activity", data: { seq: m.seq } },
        h("p", { class: "activity" }, m.deleted ? "This message was deleted" : m.body, " · ",
          h("time", { datetime: m.at ? new Date(m.at).toISOString() : "", title: fullTime(m.at) }, clockTime(m.at))));
    }
    const name = this.authorName(m);
    const mine = m.author_kind === "member";
    const note = m.type === "note";
    const head = grouped ? null : h("div", { class: "msg-head" },
      h("span", { class: "msg-author", text: name }),
      note ? h("span", { class: "note-label" }, "Private note") : null,
      h("time", { datetime: m.at ? new Date(m.at).toISOString() : "", title: fullTime(m.at) }, clockTime(m.at)));
    const foot = [];
    if (seenHere) foot.push(h("span", { class: "msg-status seen" }, "Seen"));
    if (m.meta && Array.isArray(m.meta.mentions) && m.meta.mentions.includes(ws.me.id)) foot.push(h("span", { class: "mention-flag" }, "Mentions you"));
    let del = null;
    if (this.mayDelete(m)) {
      del = h("button", { type: "button", class: "icon-button msg-delete", aria: { label: "Delete message from " + name } }, icon("trash"));
      del.addEventListener("click", () => this.deleteMessage(m));
    }
    const who = m.author_kind === "contact" ? ws.conversations.get(this.id)?.contact_id || m.author_id : m.author_id;
    return h("div", { class: ["msg", "msg-" + m.type, mine && "msg-mine", grouped && "grouped", m.deleted && "deleted"], data: { seq: m.seq } },
      grouped ? h("span", { class: "avatar-space" }) : avatar(initials(name === "You" ? ws.me.name || ws.me.email : name), hueOf(who)),
      h("div", { class: "msg-body" },
        head,
        h("div", { class: "bubble" },
          h("span", { class: "visually-hidden" }, (note ? "Private note from " : "") + name + ": "),
          m.deleted ? h("em", { class: "deleted-text" }, "This message was deleted") : this.body(m.body, note)),
        foot.length ? h("div", { class: "msg-foot" }, foot) : null),
      del);
  }

  // Text with http(s) links and @mentions as elements; everything else as text nodes.
  body(text, note) {
    const labels = note ? Array.from(this.ws.members.values()).map((mm) => memberName(mm)) : [];
    const out = [];
    for (const seg of linkSegments(text)) {
      if (seg.href) {
        out.push(h("a", { href: seg.href, target: "_blank", rel: "noopener noreferrer nofollow" }, seg.text));
      } else {
        for (const part of mentionSegments(seg.text, labels)) {
          out.push(part.mention ? h("span", { class: "mention" }, part.text) : part.text);
        }
      }
    }
    return h("span", { class: "text" }, out);
  }

  async deleteMessage(m) {
    const ok = await confirmDialog("Delete this message?", "It is removed for everyone, including in the customer's chat.",
                                   { confirm: "Delete message", danger: true });
    if (!ok) return;
    try {
      await this.ws.deleteMessage(this.id, m.seq);
      announce("Message deleted");
    } catch (e) {
      this.actionError.hidden = false;
      this.actionError.textContent = e.message;
    }
  }

  read() {
    if (document.visibilityState !== "visible") return;
    this.ws.markRead(this.id);
  }

  renderTyping() {
    const who = this.ws.typingIn(this.id);
    if (!who.length) {
      this.typingLine.textContent = "";
      return;
    }
    const names = who.map((w) => w.name);
    this.typingLine.textContent = names.length === 1 ? names[0] + " is typing…" : names.slice(0, -1).join(", ") + " and " + names[names.length - 1] + " are typing…";
  }

  // --- composer -----------------------------------------------------------------------------------

  setKind(kind) {
    this.kind = kind;
    this.composer.dataset.kind = kind;
    for (const [k, tab] of Object.entries(this.tabs)) {
      tab.setAttribute("aria-selected", String(k === kind));
      tab.tabIndex = k === kind ? 0 : -1;
    }
    this.input.setAttribute("aria-labelledby", "tab-" + kind);
    this.input.placeholder = kind === "note" ? "Write a private note… @ mentions a teammate" : "Reply to the customer…  (Enter sends, Shift+Enter for a new line)";
    this.sendButton.lastChild.textContent = kind === "note" ? "Add note" : "Send";
    if (kind !== "note") this.closeMentions();
  }

  typed() {
    const text = this.input.value;
    this.ws.setTyping(this.id, !!text.trim(), this.kind === "note");
    if (this.kind === "note") this.updateMentions();
  }

  submit() {
    const text = this.input.value;
    if (!text.trim()) return;
    const meta = {};
    if (this.kind === "note") {
      const ids = mentionedIds(text, this.picked);
      if (ids.length) meta.mentions = ids;
    }
    this.ws.send(this.id, text, this.kind, meta);
    this.input.value = "";
    this.picked.clear();
    this.closeMentions();
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.input.focus();
  }

  keydown(e) {
    if (this.mention && !this.mentionList.hidden) {
      const n = this.mention.items.length;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        this.mention.index = (this.mention.index + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
        this.renderMentions();
        return;
      }
      if (e.key === "Enter" || e.key === "Tab") {
        e.preventDefault();
        this.pickMention(this.mention.items[this.mention.index]);
        return;
      }
      if (e.key === "Escape") {
        e.preventDefault();
        this.closeMentions();
        return;
      }
    }
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.submit();
    }
  }

  updateMentions() {
    const at = mentionAt(this.input.value, this.input.selectionStart);
    if (!at) return this.closeMentions();
    const items = mentionCandidates(Array.from(this.ws.members.values()), at.query, 6);
    if (!items.length) return this.closeMentions();
    this.mention = { ...at, items, index: 0 };
    this.renderMentions();
  }

  renderMentions() {
    const { items, index } = this.mention;
    replace(this.mentionList, items.map((m, i) => {
      const li = h("li", { role: "option", id: "mention-" + i, class: i === index ? "active" : "", aria: { selected: String(i === index) } },
        avatar(initials(memberName(m)), hueOf(m.user_id), "small"), memberName(m));
      li.addEventListener("mousedown", (e) => { e.preventDefault(); this.pickMention(m); });
      return li;
    }));
    this.mentionList.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.input.setAttribute("aria-activedescendant", "mention-" + index);
  }

  pickMention(member) {
    const label = memberName(member);
    const { start } = this.mention;
    const text = this.input.value;
    const caret = this.input.selectionStart;
    const before = text.slice(0, start) + "@" + label + " ";
    this.input.value = before + text.slice(caret);
    this.input.setSelectionRange(before.length, before.length);
    this.picked.set(member.user_id, label);
    this.closeMentions();
    this.input.focus();
  }

  closeMentions() {
    this.mention = null;
    this.mentionList.hidden = true;
    clear(this.mentionList);
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }
}
