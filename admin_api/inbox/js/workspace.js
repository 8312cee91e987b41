// One signed-in member in one organisation: the data the inbox views show and the socket that
// keeps it live. Views subscribe to its events and call its actions; it never touches the DOM
// (except through the Notifier), so the rules live here and the views stay thin.
import { ApiError, paths } from "./api.js";
import { Connection } from "./connection.js";
import { contactName, memberName } from "./format.js";
import { frames, SEND_FAILED_TEXT, SEND_RETRY_LATER } from "./protocol.js";
import { Conversations, filterQuery, normaliseConversation, normaliseMessage, Thread } from "./store.js";

const TYPING_SHOWN_MS = 6000;
const TYPING_RESEND_MS = 2500;
const REQUEST_TIMEOUT_MS = 10000;
const KEPT_THREADS = 30;
const READ_DEBOUNCE_MS = 250;
const PAGE_SIZE = 50;
const PREVIEWS_IN_FLIGHT = 4;

function store() {
  try {
    const s = window.localStorage;
    s.getItem("convot-inbox:probe");
    return s;
  } catch (e) {
    return null;
  }
}

export class Workspace extends EventTarget {
  constructor({ api, me, org, notifier, gatewayUrl, openConversation }) {
    super();
    this.api = api;
    this.me = me;                 // {id, email, name}
    this.org = org;               // Organisation (id, name, role, permissions, ...)
    this.notifier = notifier;
    this.gatewayUrl = gatewayUrl;
    this.openConversation = openConversation || (() => {});
    this.members = new Map();     // user id -> member
    this.apps = new Map();        // app id -> app
    this.tags = [];               // organisation tag names
    this.contacts = new Map();    // contact id -> contact | Promise
    this.conversations = new Conversations();
    this.threads = new Map();     // conversation id -> Thread (recently opened first)
    this.typing = new Map();      // conversation id -> Map(author key -> {name, note, until})
    this.contactsOnline = new Set();
    this.availability = new Map(); // user id -> online|busy|offline
    this.pending = new Map();     // ref -> {resolve, reject, timer}
    this.refSeq = 0;
    this.readSent = new Map();    // conversation -> seq sent in a read frame
    this.typingSent = new Map();  // conversation -> {at, active}
    this.storage = store();
    this.activeId = null;         // the conversation on screen
    this.connected = false;
    this.everConnected = false;
    this.listCursor = null;
    this.listLoading = false;
    this.filter = null;
    this.canRevenue = (org.permissions || []).includes("revenue.read");
    this._loadReadPositions();
  }

  get orgId() {
    return this.org.id;
  }

  can(permission) {
    return (this.org.permissions || []).includes(permission);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // --- start and stop ---------------------------------------------------------------------

  async start() {
    await Promise.all([this.loadMembers(), this.loadApps(), this.loadTags()]);
    await this.loadAvailability();
    this._restoreOutbox();
    this.connection = new Connection({
      url: this.gatewayUrl,
      getToken: () => this.api.post(paths.socketToken(this.orgId)),
      onFrame: (f) => this._frame(f),
      onReady: (f) => this._ready(f),
      onState: (state, detail) => {
        this.connected = state === "ready";
        if (state !== "ready") for (const t of this.threads.values()) t.requeue();
        this.emit("connection", { state, detail });
      },
      onSignedOut: (reason) => this.emit("signed_out", { reason }),
    });
    this.connection.start();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this._membersRetry);
    if (this.connection) this.connection.stop();
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }

  async loadMembers() {
    clearTimeout(this._membersRetry);
    try {
      const list = await this.api.get(paths.members(this.orgId));
      this.members = new Map(list.items.map((m) => [m.user_id, m]));
      for (const m of list.items) if (!this.availability.has(m.user_id)) this.availability.set(m.user_id, m.availability || "offline");
      this._membersDelay = 0;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      // Names, @mentions and assignment need the team: a transient failure (network, 5xx,
      // 429) is retried with backoff up to 30 s instead of leaving the list empty until reload.
      if (!this.stopped && (e.status === 0 || e.status === 429 || e.status >= 500)) {
        this._membersDelay = Math.min(30000, (this._membersDelay || 500) * 2);
        this._membersRetry = setTimeout(() => this.loadMembers(), this._membersDelay);
      }
    }
    this.emit("members");
  }

  // Every member's state as teammates see it, and this member's own choice (the server's
  // model: the choice counts while an inbox socket is open; engine/availability.py).
  async loadAvailability() {
    try {
      const team = await this.api.get(paths.availability(this.orgId));
      for (const m of team.members || []) {
        this.availability.set(m.user_id, m.state);
        if (m.user_id === this.me.id) this.myChoice = m.choice;
      }
      this.teamState = team.team;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
    this.emit("presence", {});
  }

  async loadApps() {
    try {
      const list = await this.api.get(paths.apps(this.orgId));
      this.apps = new Map(list.items.map((a) => [a.id, a]));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.apps = new Map();
    }
    this.emit("apps");
  }

  async loadTags() {
    try {
      const list = await this.api.get(paths.tags(this.orgId));
      this.tags = (list.items || []).map((t) => (typeof t === "string" ? t : t.name)).filter(Boolean).sort();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
    this.emit("tags");
  }

  memberName(id) {
    return memberName(this.members.get(id));
  }

  // --- the conversation list ------------------------------------------------------------------

  setFilter(filter) {
    this.filter = { ...filter };
    this.listCursor = null;
    this.listDone = false;
    this.emit("list");
    return this.loadPage();
  }

  async loadPage() {
    if (this.listLoading || this.listDone || !this.filter) return;
    this.listLoading = true;
    this.emit("list-loading", true);
    const filter = this.filter;
    const query = filterQuery(filter, this.me.id);
    query.set("limit", String(PAGE_SIZE));
    if (this.listCursor) query.set("cursor", this.listCursor);
    // PostgreSQL trails the live state by a moment: only what no event touched lately is replaced.
    const since = Date.now() - 2000;
    try {
      const page = await this.api.get(paths.conversations(this.orgId) + "?" + query.toString());
      if (filter !== this.filter) return;   // the filter changed meanwhile
      for (const raw of page.items || []) {
        const c = this.conversations.upsert(normaliseConversation(raw), { since });
        if (raw.contact && raw.contact.id) this.contacts.set(raw.contact.id, raw.contact);
        if (c) delete c.partial;
      }
      this._queuePreviews();
      this.listCursor = page.next_cursor || (page.pagination && page.pagination.next_cursor) || null;
      this.listDone = !this.listCursor;
      this.listError = null;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.listError = e;
    } finally {
      this.listLoading = false;
      this.emit("list-loading", false);
      this.emit("list");
    }
    // The filter changed while this page was on its way: load the new filter's first page.
    if (filter !== this.filter) this.loadPage();
  }

  // The list API has no last message: each row's preview comes from a one-message history
  // page over the socket, a few at a time (cheap for the gateway: Redis' recent list).
  _queuePreviews() {
    this.previewQueue = this.previewQueue || [];
    this.previewPending = this.previewPending || new Set();
    for (const c of this.conversations.byId.values()) {
      if (!c.preview && c.seq > 0 && !c.previewAsked) {
        c.previewAsked = true;
        this.previewQueue.push(c.id);
      }
    }
    this._pumpPreviews();
  }

  _pumpPreviews() {
    if (!this.connected || !this.previewQueue) return;
    while (this.previewPending.size < PREVIEWS_IN_FLIGHT && this.previewQueue.length) {
      const id = this.previewQueue.shift();
      const c = this.conversations.get(id);
      if (!c || c.preview) continue;
      this.previewPending.add(id);
      this.connection.send({ ...frames.history(id, null, 1), ref: "preview:" + id });
    }
  }

  _previewed(f) {
    const id = f.conversation_id;
    this.previewPending.delete(id);
    const list = Array.isArray(f.messages) ? f.messages : [];
    const m = list.length ? normaliseMessage(list[list.length - 1]) : null;
    if (m && this.conversations.setPreview(id, m)) this.emit("list");
    this._pumpPreviews();
  }

  visible() {
    return this.filter ? this.conversations.visible(this.filter, this.me.id) : [];
  }

  // A conversation known only from a message event: ask for its summary once.
  async _complete(id) {
    try {
      const raw = await this.api.get(paths.conversation(this.orgId, id));
      const c = this.conversations.upsert(normaliseConversation(raw), { authoritative: true });
      if (c) delete c.partial;
      if (raw && raw.contact && raw.contact.id) this.contacts.set(raw.contact.id, raw.contact);
      this.emit("list");
      this.emit("conversation", { id });
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
  }

  // --- contacts -------------------------------------------------------------------------------

  contact(id) {
    const c = this.contacts.get(id);
    return c && !(c instanceof Promise) ? c : null;
  }

  async loadContact(id, { fresh = false } = {}) {
    if (!id) return null;
    const have = this.contacts.get(id);
    if (have && !fresh) return have instanceof Promise ? have : have;
    const p = this.api.get(paths.contact(this.orgId, id)).then((c) => {
      this.contacts.set(id, c);
      this.emit("contact", { id });
      return c;
    }, (e) => {
      this.contacts.delete(id);
      throw e;
    });
    if (!have) this.contacts.set(id, p);
    return p;
  }

  // An erased contact: their conversations leave the lists and the caches at once.
  forgetContact(contactId) {
    for (const c of Array.from(this.conversations.byId.values())) {
      if (c.contact_id === contactId) {
        this.conversations.byId.delete(c.id);
        this.conversations.unread.delete(c.id);
        this.threads.delete(c.id);
      }
    }
    this.contacts.delete(contactId);
    this.emit("list");
  }

  // Signing out on a shared computer leaves nothing typed behind.
  forgetLocalData() {
    if (!this.storage) return;
    try { this.storage.removeItem(this._outboxKey()); } catch (e) { /* nothing to remove */ }
  }

  contactLabel(id) {
    return contactName(this.contact(id), id);
  }

  // --- threads --------------------------------------------------------------------------------

  thread(id) {
    let t = this.threads.get(id);
    if (!t) {
      t = new Thread(id);
      this.threads.set(id, t);
    } else {
      this.threads.delete(id);
      this.threads.set(id, t);   // most recently used last
    }
    while (this.threads.size > KEPT_THREADS) {
      const [oldest, ot] = this.threads.entries().next().value;
      if (oldest === this.activeId || ot.outbox.length) break;
      this.threads.delete(oldest);
    }
    return t;
  }

  open(id) {
    this.activeId = id;
    const t = this.thread(id);
    if (!t.loaded && !t.historyPending) this._history(t);
    const c = this.conversations.get(id);
    if (!c || c.partial) this._complete(id);
    return t;
  }

  close() {
    this.activeId = null;
  }

  _history(t, before) {
    if (!this.connected) return;
    t.historyPending = true;
    this.connection.send(frames.history(t.id, before, PAGE_SIZE));
  }

  loadOlder(id) {
    const t = this.threads.get(id);
    if (!t || t.historyPending || !t.more || !t.loaded) return false;
    this._history(t, t.lowestSeq());
    return true;
  }

  // --- sending ----------------------------------------------------------------------------------

  send(conversationId, body, kind, meta) {
    const text = String(body || "");
    if (!text.trim()) return null;
    const t = this.thread(conversationId);
    const item = t.queue(text, kind === "note" ? "note" : "reply", meta);
    this._saveOutbox();
    this._flush(t);
    this.setTyping(conversationId, false, kind === "note");
    this.emit("thread", { id: conversationId });
    return item;
  }

  retry(conversationId, cid) {
    const t = this.threads.get(conversationId);
    const item = t && t.findOutbox(cid);
    if (!item) return;
    item.status = "queued";
    item.error = null;
    this._flush(t);
    this.emit("thread", { id: conversationId });
  }

  discard(conversationId, cid) {
    const t = this.threads.get(conversationId);
    if (t && t.dropOutbox(cid)) {
      this._saveOutbox();
      this.emit("thread", { id: conversationId });
    }
  }

  _flush(t) {
    if (!this.connected) return;
    for (const item of t.sendable()) {
      if (this.connection.send(frames.send(t.id, item.cid, item.body, item.kind, item.meta))) item.status = "sending";
    }
  }

  _outboxKey() {
    return "convot-inbox:outbox:" + this.me.id + ":" + this.orgId;
  }

  _saveOutbox() {
    if (!this.storage) return;
    const items = [];
    for (const t of this.threads.values()) {
      for (const o of t.outbox) items.push({ conversation_id: t.id, cid: o.cid, body: o.body, kind: o.kind, meta: o.meta, at: o.at });
    }
    try {
      if (items.length) this.storage.setItem(this._outboxKey(), JSON.stringify(items));
      else this.storage.removeItem(this._outboxKey());
    } catch (e) { /* quota: the outbox stays in memory */ }
  }

  // Messages typed before a reload and never acknowledged are sent again with their ids.
  _restoreOutbox() {
    if (!this.storage) return;
    let items = [];
    try { items = JSON.parse(this.storage.getItem(this._outboxKey()) || "[]"); } catch (e) { items = []; }
    for (const o of Array.isArray(items) ? items : []) {
      if (!o || typeof o.cid !== "string" || typeof o.body !== "string" || typeof o.conversation_id !== "string") continue;
      const t = this.thread(o.conversation_id);
      if (!t.findOutbox(o.cid)) t.outbox.push({ cid: o.cid, body: o.body, kind: o.kind === "note" ? "note" : "reply", meta: o.meta || null, at: o.at || Date.now(), status: "queued", error: null });
    }
  }

  // --- typing and reading ---------------------------------------------------------------------

  setTyping(conversationId, active, note) {
    if (!this.connected) return;
    const last = this.typingSent.get(conversationId);
    const now = Date.now();
    if (active && last && last.active && now - last.at < TYPING_RESEND_MS) return;
    if (!active && (!last || !last.active)) return;
    this.typingSent.set(conversationId, { at: now, active });
    this.connection.send(frames.typing(conversationId, active, note));
  }

  // The agent looks at the conversation: everything in it is read (unread clears, and the
  // shopper sees "Seen" on their messages).
  markRead(conversationId) {
    const t = this.threads.get(conversationId);
    const c = this.conversations.get(conversationId);
    const seq = Math.max(t ? t.maxSeq : 0, c ? c.seq : 0);
    if (!seq) return;
    if (this.conversations.markRead(conversationId, seq)) this.emit("list");
    this._saveReadPositions();
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      if (!(seq > (this.readSent.get(conversationId) || 0)) || !this.connected) return;
      if (this.connection.send(frames.read(conversationId, seq))) this.readSent.set(conversationId, seq);
    }, READ_DEBOUNCE_MS);
    this.notifier.setUnread(this.unreadTotal());
  }

  unreadTotal() {
    let n = 0;
    for (const c of this.conversations.byId.values()) if (c.status !== "resolved") n += this.conversations.unreadOf(c.id) > 0 ? 1 : 0;
    return n;
  }

  _readKey() {
    return "convot-inbox:read:" + this.me.id + ":" + this.orgId;
  }

  _loadReadPositions() {
    if (!this.storage) return;
    try {
      const saved = JSON.parse(this.storage.getItem(this._readKey()) || "{}");
      for (const [id, seq] of Object.entries(saved)) if (typeof seq === "number") this.conversations.readSeq.set(id, seq);
    } catch (e) { /* ignore a corrupt entry */ }
  }

  _saveReadPositions() {
    if (!this.storage) return;
    const entries = Array.from(this.conversations.readSeq.entries()).slice(-2000);
    try { this.storage.setItem(this._readKey(), JSON.stringify(Object.fromEntries(entries))); } catch (e) { /* quota */ }
  }

  // --- conversation actions (through the socket: every inbox and widget sees them live) ---------

  request(frame) {
    if (!this.connected) return Promise.reject(new Error("Not connected: try again in a moment."));
    const ref = "req:" + (++this.refSeq);
    frame.ref = ref;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new Error("No answer from the server: try again."));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
      if (!this.connection.send(frame)) {
        clearTimeout(timer);
        this.pending.delete(ref);
        reject(new Error("Not connected: try again in a moment."));
      }
    });
  }

  update(conversationId, changes) {
    return this.request(frames.update(conversationId, changes));
  }

  deleteMessage(conversationId, seq) {
    return this.request(frames.deleteMessage(conversationId, seq));
  }

  // Admins and owners delete any message; agents only their own replies (gateway/authz.py).
  mayDelete(message) {
    if (!message || message.deleted || !message.seq) return false;
    if (this.org.role === "owner" || this.org.role === "admin") return true;
    return message.type === "outgoing" && message.author_kind === "member" && message.author_id === this.me.id;
  }

  // The member's choice: over the socket when it is up (stored and announced by the gateway),
  // else through the API. Teammates and widgets hear it live either way.
  async setAvailability(state) {
    this.myChoice = state;
    if (this.connected && this.connection.send(frames.presence(state))) return;
    const m = await this.api.put(paths.availability(this.orgId), { state });
    this.availability.set(this.me.id, m.state);
    this.emit("presence", { id: this.me.id, kind: "member" });
  }

  // Admins take a member offline (no auto-assignment until they choose Online again).
  async forceOffline(userId) {
    const m = await this.api.put(paths.memberAvailability(this.orgId, userId), { state: "offline" });
    this.availability.set(userId, m.state);
    this.emit("presence", { id: userId, kind: "member" });
  }

  // --- socket frames -------------------------------------------------------------------------------

  _ready() {
    const first = !this.everConnected;
    this.everConnected = true;
    // Every conversation on screen or with unsent messages continues exactly where it stopped.
    const resume = {};
    for (const t of this.threads.values()) {
      if (t.loaded) resume[t.id] = t.lastSeq;
      else if (t.id === this.activeId || t.outbox.length) this._history(t);
    }
    if (Object.keys(resume).length) this.connection.send(frames.resume(resume));
    for (const t of this.threads.values()) {
      t.requeue();
      this._flush(t);
    }
    if (this.previewPending && this.previewPending.size) {
      this.previewQueue.unshift(...this.previewPending);
      this.previewPending.clear();
    }
    this._pumpPreviews();
    if (!first && this.filter) {
      // What changed while we were away: the list again (live events continue from now on).
      this.listCursor = null;
      this.listDone = false;
      this.loadPage();
    }
    this.emit("ready");
  }

  _frame(f) {
    const handler = this["_on_" + String(f.type).replace(".", "_")];
    if (handler) handler.call(this, f);
  }

  _on_message(f) {
    const m = normaliseMessage(f.message);
    if (!m) return;
    const { conversation, fresh } = this.conversations.applyMessage(m);
    const t = this.threads.get(m.conversation_id);
    let result = "dup";
    if (t && t.loaded) {
      result = t.add(m);
      if (result === "gap") this.connection.send(frames.resume({ [t.id]: t.lastSeq }));
      if (result !== "dup") this.emit("thread", { id: t.id, seq: m.seq });
    }
    this._clearTypingOf(m.conversation_id, m.author_kind, m.author_id);
    if (conversation.partial && !conversation.completing) {
      conversation.completing = true;
      this._complete(m.conversation_id);
    }
    if (fresh) {
      if (m.author_kind === "member" && m.author_id === this.me.id) this.conversations.markRead(m.conversation_id, m.seq);
      this.emit("list");
      this._maybeNotify(m, conversation);
      this.notifier.setUnread(this.unreadTotal());
    }
  }

  _maybeNotify(m, c) {
    if (m.author_kind === "member" && m.author_id === this.me.id) return;
    const looking = this.activeId === m.conversation_id && document.visibilityState === "visible" && document.hasFocus();
    const mentioned = m.type === "note" && Array.isArray(m.meta.mentions) && m.meta.mentions.includes(this.me.id);
    const mine = c.assignee_id === this.me.id || !c.assignee_id;
    if (!mentioned && !(m.type === "incoming" && mine)) return;
    if (looking && !mentioned) return;
    const who = m.author_kind === "contact" ? this.contactLabel(c.contact_id) : this.memberName(m.author_id);
    this.notifier.notify({
      title: mentioned ? who + " mentioned you" : who,
      body: m.body,
      tag: "convot-" + m.conversation_id,
      force: mentioned && !looking,
      onclick: () => this.openConversation(m.conversation_id),
    });
    if (mentioned) this.emit("mention", { conversation_id: m.conversation_id, seq: m.seq, by: m.author_id });
  }

  _on_conversation_update(f) {
    const c = this.conversations.applyUpdate(f);
    const id = f.conversation && f.conversation.id;
    if (!id) return;
    const t = this.threads.get(id);
    if (t && f.message && typeof f.message.seq === "number" && f.message.deleted) {
      if (t.markDeleted(f.message.seq)) this.emit("thread", { id, seq: f.message.seq });
    }
    const changes = Array.isArray(f.changes) ? f.changes : [];
    if (changes.includes("assignment") && c && c.assignee_id === this.me.id && f.actor && f.actor.id !== this.me.id) {
      this.notifier.notify({ title: "Assigned to you", body: this.contactLabel(c.contact_id), tag: "convot-assign-" + id,
                             onclick: () => this.openConversation(id) });
    }
    if (changes.includes("created") && c && (!c.assignee_id || c.assignee_id === this.me.id) && c.contact_id) {
      this.loadContact(c.contact_id).catch(() => {});
    }
    if (changes.includes("contact") && c && c.contact_id) this.loadContact(c.contact_id, { fresh: true }).catch(() => {});
    this.emit("list");
    this.emit("conversation", { id, changes, deleted: !!(f.conversation && f.conversation.deleted) });
  }

  _on_history(f) {
    if (typeof f.ref === "string" && f.ref.startsWith("preview:")) return this._previewed(f);
    const t = this.threads.get(f.conversation_id);
    if (!t) return;
    const list = Array.isArray(f.messages) ? f.messages : [];
    const first = list.length && typeof list[0].seq === "number" ? list[0].seq : 0;
    const wasLoaded = t.loaded;
    t.historyPending = false;
    t.more = !!f.more;
    if (!wasLoaded) {
      t.loaded = true;
      t.floorAt(first ? first - 1 : 0);
    }
    for (const raw of list) {
      const m = normaliseMessage(raw);
      if (m) t.add(m);
    }
    if (!wasLoaded) {
      // The latest page may not reach what the list knows: ask for the rest.
      const c = this.conversations.get(t.id);
      if (c && c.seq > t.maxSeq) this.connection.send(frames.resume({ [t.id]: t.lastSeq }));
    }
    this.emit("thread", { id: t.id, history: true, older: wasLoaded });
  }

  _on_resumed(f) {
    for (const id of f.not_found || []) {
      const t = this.threads.get(id);
      if (t) {
        for (const o of t.outbox) { o.status = "failed"; o.error = SEND_FAILED_TEXT.not_found; }
        this.emit("thread", { id });
      }
    }
    for (const id of f.incomplete || []) {
      const t = this.threads.get(id);
      if (t) this.connection.send(frames.resume({ [id]: t.lastSeq }));
    }
  }

  _on_ack(f) {
    const id = f.conversation_id;
    const t = this.threads.get(id);
    const item = t && t.findOutbox(f.client_msg_id || f.ref);
    if (!item) return;
    t.dropOutbox(item.cid);
    this._saveOutbox();
    if (t.loaded) {
      t.add({ conversation_id: id, seq: f.seq, id: f.id, cid: item.cid, type: item.kind === "note" ? "note" : "outgoing",
              author_kind: "member", author_id: this.me.id, body: item.body, meta: item.meta || {}, at: f.created_at, deleted: false });
    }
    this._echoOwn(id, f.seq, item, f.created_at);
    this.emit("thread", { id, seq: f.seq });
  }

  // The list learns about our own message from the ack too (the fan-out may come later).
  _echoOwn(id, seq, item, at) {
    const { fresh } = this.conversations.applyMessage({ conversation_id: id, seq, type: item.kind === "note" ? "note" : "outgoing",
      author_kind: "member", author_id: this.me.id, body: item.body, meta: item.meta || {}, at, deleted: false });
    if (fresh) {
      this.conversations.markRead(id, seq);
      this.emit("list");
    }
  }

  _on_ok(f) {
    const p = this.pending.get(f.ref);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(f.ref);
    p.resolve(f);
  }

  _on_error(f) {
    const ref = typeof f.ref === "string" ? f.ref : "";
    const p = this.pending.get(ref);
    if (p) {
      clearTimeout(p.timer);
      this.pending.delete(ref);
      const messages = { forbidden: "Your role does not allow this.", not_found: "This conversation or message no longer exists.",
                         bad_frame: "The server refused this change." };
      p.reject(new Error(messages[f.code] || "The server could not do this (" + f.code + ")."));
      return;
    }
    if (ref.startsWith("preview:")) {
      this.previewPending.delete(ref.slice(8));
      this._pumpPreviews();
      return;
    }
    if (ref.startsWith("history:")) {
      const t = this.threads.get(ref.slice(8));
      if (t) {
        t.historyPending = false;
        if (f.code === "not_found") {
          t.loaded = true;
          t.missing = true;
        }
        this.emit("thread", { id: t.id });
      }
      return;
    }
    for (const t of this.threads.values()) {
      const item = t.findOutbox(ref);
      if (!item) continue;
      if (SEND_RETRY_LATER.has(f.code)) {
        item.status = "queued";
        setTimeout(() => this._flush(t), f.code === "rate_limited" ? 2000 : 1000);
      } else {
        item.status = "failed";
        item.error = SEND_FAILED_TEXT[f.code] || "Could not be sent.";
      }
      this.emit("thread", { id: t.id });
      return;
    }
  }

  _on_typing(f) {
    const id = f.conversation_id;
    if (!id || !f.author) return;
    const key = f.author.kind + ":" + f.author.id;
    if (f.author.kind === "member" && f.author.id === this.me.id) return;
    let who = this.typing.get(id);
    if (!who) this.typing.set(id, (who = new Map()));
    if (f.active === false) who.delete(key);
    else {
      const name = f.author.kind === "contact" ? this.contactLabel(this.conversations.get(id)?.contact_id || f.author.id) : this.memberName(f.author.id);
      who.set(key, { name, kind: f.author.kind, until: Date.now() + TYPING_SHOWN_MS });
      setTimeout(() => this._expireTyping(id), TYPING_SHOWN_MS + 50);
    }
    this.emit("typing", { id });
  }

  _clearTypingOf(id, kind, authorId) {
    const who = this.typing.get(id);
    if (who && who.delete(kind + ":" + authorId)) this.emit("typing", { id });
  }

  _expireTyping(id) {
    const who = this.typing.get(id);
    if (!who) return;
    const now = Date.now();
    let changed = false;
    for (const [key, v] of who) if (v.until <= now) { who.delete(key); changed = true; }
    if (changed) this.emit("typing", { id });
  }

  typingIn(id) {
    const who = this.typing.get(id);
    return who ? Array.from(who.values()) : [];
  }

  _on_read(f) {
    if (!f.reader) return;
    if (f.reader.kind === "member" && f.reader.id === this.me.id) {
      // This member read it in another browser or tab: the unread state follows.
      if (typeof f.seq !== "number") return;
      if (this.conversations.readElsewhere(f.conversation_id, f.seq)) {
        this.emit("list");
        this.notifier.setUnread(this.unreadTotal());
      }
      this._saveReadPositions();
      return;
    }
    if (f.reader.kind !== "contact") return;
    const t = this.threads.get(f.conversation_id);
    if (t && f.seq > t.contactReadSeq) {
      t.contactReadSeq = f.seq;
      this.emit("thread", { id: t.id, receipts: true });
    }
  }

  _on_presence(f) {
    if (!f.subject) return;
    if (f.subject.kind === "contact") {
      if (f.state === "online") this.contactsOnline.add(f.subject.id);
      else this.contactsOnline.delete(f.subject.id);
    } else if (f.subject.kind === "member") {
      this.availability.set(f.subject.id, f.state);
      // Our own state changed (here, in another tab, or an admin forced it): the control follows.
      // (While this inbox is open the state others see is the member's choice.)
      if (f.subject.id === this.me.id) this.myChoice = f.state;
    } else if (f.subject.kind === "team") {
      this.teamState = f.state;
    }
    this.emit("presence", { id: f.subject.id, kind: f.subject.kind });
  }
}
