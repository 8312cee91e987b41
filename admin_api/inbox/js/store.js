// The inbox's state as pure data structures, driven by tests without a network:
//   Thread       one conversation's messages: ordered by seq, no duplicates, gaps detected,
//                the outbox of messages typed but not yet acknowledged
//   Conversations every conversation the inbox knows, kept current from REST pages and the
//                socket's events; filters (views Mine / Unassigned / All, status, tag, app),
//                ordering and unread counts
import { randomId } from "./protocol.js";
import { toMillis } from "./format.js";

// A message as the wire carries it (docs/protocol.md) -> the thread's shape.
export function normaliseMessage(raw) {
  if (!raw || typeof raw !== "object" || typeof raw.seq !== "number" || !(raw.seq > 0)) return null;
  return {
    conversation_id: raw.conversation_id,
    seq: raw.seq,
    id: raw.id || null,
    cid: raw.client_msg_id || null,
    type: raw.type,
    author_kind: raw.author_kind,
    author_id: raw.author_id || null,
    body: raw.deleted ? "" : String(raw.body == null ? "" : raw.body),
    meta: raw.meta && typeof raw.meta === "object" ? raw.meta : {},
    at: toMillis(raw.created_at),
    deleted: !!raw.deleted,
  };
}

export class Thread {
  constructor(id) {
    this.id = id;
    this.items = new Map();   // seq -> message
    this.seqs = [];           // ascending
    this.lastSeq = 0;         // everything up to here is here (what resume asks from)
    this.maxSeq = 0;
    this.outbox = [];         // {cid, body, kind, meta, at, status: queued|sending|failed, error}
    this.contactReadSeq = 0;  // the shopper has read up to here (read receipts)
    this.more = true;         // older history exists
    this.loaded = false;      // the first history page arrived
  }

  // History brings the latest page: what is older than its first message is not a gap.
  floorAt(seq) {
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    while (this.items.has(this.lastSeq + 1)) this.lastSeq++;
  }

  // "dup", "updated" (deletion of a known message), "new", or "gap" (new, but earlier ones
  // are missing: resume from lastSeq).
  add(m) {
    if (!m || !(m.seq > 0)) return "dup";
    const old = this.items.get(m.seq);
    if (old) {
      if (m.deleted && !old.deleted) {
        old.deleted = true;
        old.body = "";
        return "updated";
      }
      return "dup";
    }
    this.items.set(m.seq, m);
    let i = this.seqs.length;
    while (i > 0 && this.seqs[i - 1] > m.seq) i--;
    this.seqs.splice(i, 0, m.seq);
    if (m.seq > this.maxSeq) this.maxSeq = m.seq;
    if (m.cid) this.dropOutbox(m.cid);
    while (this.items.has(this.lastSeq + 1)) this.lastSeq++;
    return this.maxSeq > this.lastSeq ? "gap" : "new";
  }

  markDeleted(seq) {
    const m = this.items.get(seq);
    if (!m || m.deleted) return null;
    m.deleted = true;
    m.body = "";
    return m;
  }

  lowestSeq() {
    return this.seqs.length ? this.seqs[0] : 0;
  }

  queue(body, kind, meta, at) {
    const item = { cid: randomId(), body, kind, meta: meta || null, at: at || Date.now(), status: "queued", error: null };
    this.outbox.push(item);
    return item;
  }

  findOutbox(cid) {
    return this.outbox.find((o) => o.cid === cid) || null;
  }

  dropOutbox(cid) {
    const i = this.outbox.findIndex((o) => o.cid === cid);
    return i < 0 ? null : this.outbox.splice(i, 1)[0];
  }

  // What to send now, in typed order.
  sendable() {
    return this.outbox.filter((o) => o.status === "queued");
  }

  // After a disconnect nothing in flight is known to have arrived: all of it goes again, with
  // the same client ids, so the gateway stores each once.
  requeue() {
    for (const o of this.outbox) if (o.status === "sending") o.status = "queued";
  }

  // Messages then unacknowledged outbox items, in display order.
  entries() {
    const out = this.seqs.map((s) => this.items.get(s));
    for (const o of this.outbox) out.push(o);
    return out;
  }

  // The last message the agent's side sent that the shopper has read (for "Seen").
  seenSeq() {
    return this.contactReadSeq;
  }
}

// --- conversations --------------------------------------------------------------------------

export const VIEWS = ["mine", "unassigned", "all"];
export const STATUS_FILTERS = ["open", "pending", "resolved", "all"];

export function defaultFilter() {
  return { view: "all", status: "open", tag: null, app: null };
}

// A conversation summary from a REST item or a socket snapshot, in one shape.
export function normaliseConversation(raw) {
  if (!raw || typeof raw !== "object" || typeof raw.id !== "string") return null;
  const tags = Array.isArray(raw.tags) ? raw.tags.map((t) => (typeof t === "string" ? t : t && t.name)).filter(Boolean) : [];
  const seq = typeof raw.seq === "number" ? raw.seq : typeof raw.last_seq === "number" ? raw.last_seq : 0;
  const last = raw.last_message && typeof raw.last_message === "object" ? raw.last_message : null;
  return {
    id: raw.id,
    status: raw.status || "open",
    assignee_id: raw.assignee_id || null,
    tags: tags.sort(),
    contact_id: raw.contact_id || (raw.contact && raw.contact.id) || null,
    app_id: raw.app_id || null,
    channel: raw.channel || "widget",
    seq,
    rev: typeof raw.rev === "number" ? raw.rev : 0,
    // This member's read position as the server stored it (REST answers only; null: none).
    read_seq: typeof raw.read_seq === "number" ? raw.read_seq : null,
    created_at: toMillis(raw.created_at),
    last_at: toMillis(raw.last_message_at) || toMillis(last && last.created_at) || toMillis(raw.updated_at) || toMillis(raw.created_at),
    preview: last ? { body: last.deleted ? "" : String(last.body || ""), type: last.type, author_kind: last.author_kind,
                      author_id: last.author_id || null, deleted: !!last.deleted }
                  : raw.first_message ? { body: String(raw.first_message), type: "incoming", author_kind: "contact", author_id: null, deleted: false }
                  : null,
    deleted: !!raw.deleted,
  };
}

export class Conversations {
  constructor() {
    this.byId = new Map();
    this.readSeq = new Map();     // conversation -> what this agent has read: the higher of this
                                  // browser's own position and the server's read_seq
    this.unread = new Map();      // conversation -> count of incoming messages after readSeq
  }

  get(id) {
    return this.byId.get(id) || null;
  }

  // Merge a summary: a newer revision (or a higher seq) wins, so a REST page fetched before a
  // live event never undoes it.
  // `since`: when the REST request that brought `summary` started; its state wins over what
  // no live event has touched since then (a list reloaded after a reconnect).
  upsert(summary, { authoritative = false, since = 0 } = {}) {
    if (!summary) return null;
    const old = this.byId.get(summary.id);
    if (!old) {
      this.byId.set(summary.id, summary);
      this.readElsewhere(summary.id, summary.read_seq);
      this._unreadFromSummary(summary);
      return summary;
    }
    const newerState = authoritative || summary.rev > old.rev || (summary.rev === 0 && old.rev === 0)
      || (since > 0 && (old.touched || 0) < since);
    if (newerState) {
      old.status = summary.status;
      old.assignee_id = summary.assignee_id;
      old.tags = summary.tags;
      if (summary.rev) old.rev = summary.rev;
      old.deleted = summary.deleted || old.deleted;
    }
    for (const key of ["contact_id", "app_id", "created_at"]) if (!old[key] && summary[key]) old[key] = summary[key];
    this.readElsewhere(old.id, summary.read_seq);
    if (summary.seq > old.seq) {
      old.seq = summary.seq;
      if (summary.preview) old.preview = summary.preview;
      if (summary.last_at) old.last_at = summary.last_at;
      this._unreadFromSummary(old);
    } else if (!old.preview && summary.preview) {
      old.preview = summary.preview;
    }
    if (!old.last_at && summary.last_at) old.last_at = summary.last_at;
    return old;
  }

  // Without the messages, a conversation whose last message came from the shopper and is newer
  // than what was read counts as (at least) one unread.
  _unreadFromSummary(c) {
    const read = this.readSeq.get(c.id) || 0;
    if (c.seq > read && c.preview && c.preview.type === "incoming" && !(this.unread.get(c.id) > 0)) {
      this.unread.set(c.id, 1);
    }
  }

  // The last message of a conversation known only from the list API (no preview yet).
  setPreview(id, m) {
    const c = this.byId.get(id);
    if (!c || (c.preview && m.seq < c.seq)) return false;
    c.preview = { body: m.body, type: m.type, author_kind: m.author_kind, author_id: m.author_id, deleted: m.deleted };
    if (m.seq > c.seq) c.seq = m.seq;
    if (m.at && (!c.last_at || m.at > c.last_at)) c.last_at = m.at;
    this._unreadFromSummary(c);
    return true;
  }

  // A `message` event. Returns {conversation, fresh} (fresh: not seen before).
  applyMessage(m) {
    let c = this.byId.get(m.conversation_id);
    if (!c) {
      c = { id: m.conversation_id, status: "open", assignee_id: null, tags: [], contact_id: m.author_kind === "contact" ? m.author_id : null,
            app_id: null, channel: "widget", seq: 0, rev: 0, created_at: m.at, last_at: m.at, preview: null, deleted: false, partial: true };
      this.byId.set(c.id, c);
    }
    c.touched = Date.now();
    const fresh = m.seq > c.seq;
    if (fresh) {
      c.seq = m.seq;
      c.last_at = m.at || Date.now();
      c.preview = { body: m.body, type: m.type, author_kind: m.author_kind, author_id: m.author_id, deleted: m.deleted };
      if (m.type === "incoming" && !m.deleted && m.seq > (this.readSeq.get(c.id) || 0)) {
        this.unread.set(c.id, (this.unread.get(c.id) || 0) + 1);
      }
    }
    // Whoever answers in a conversation has read it up to there.
    return { conversation: c, fresh };
  }

  // A `conversation.update` event: the snapshot is the truth at its revision.
  applyUpdate(frame) {
    const snap = normaliseConversation(frame.conversation);
    if (!snap) return null;
    const c = this.upsert(snap);
    c.touched = Date.now();
    if (frame.message && frame.message.deleted && c.preview && c.seq === frame.message.seq) {
      c.preview = { ...c.preview, body: "", deleted: true };
    }
    if (snap.deleted) {
      this.byId.delete(snap.id);
      this.unread.delete(snap.id);
    }
    return c;
  }

  // The agent has read a conversation up to `seq`.
  markRead(id, seq) {
    if (!(seq > (this.readSeq.get(id) || 0))) return false;
    this.readSeq.set(id, seq);
    const had = this.unread.get(id) || 0;
    this.unread.set(id, 0);
    return had > 0;
  }

  // A read position of this member from elsewhere: the server's `read_seq` (what any of their
  // browsers read) or a `read` frame of another of their inbox sockets. It raises the position
  // but clears the unread count only when it covers the conversation's latest message (later
  // messages stay unread). Returns true when the unread count changed.
  readElsewhere(id, seq) {
    if (typeof seq !== "number" || !(seq > (this.readSeq.get(id) || 0))) return false;
    this.readSeq.set(id, seq);
    const c = this.byId.get(id);
    if (c && seq >= c.seq && this.unread.get(id) > 0) {
      this.unread.set(id, 0);
      return true;
    }
    return false;
  }

  unreadOf(id) {
    return this.unread.get(id) || 0;
  }

  matches(c, filter, me) {
    if (c.deleted) return false;
    if (filter.view === "mine" && c.assignee_id !== me) return false;
    if (filter.view === "unassigned" && c.assignee_id) return false;
    if (filter.status && filter.status !== "all" && c.status !== filter.status) return false;
    if (filter.tag && !c.tags.includes(filter.tag)) return false;
    if (filter.app && c.app_id !== filter.app) return false;
    return true;
  }

  // The list to show: matching conversations, most recent activity first.
  visible(filter, me) {
    const out = [];
    for (const c of this.byId.values()) if (this.matches(c, filter, me)) out.push(c);
    out.sort((a, b) => (b.last_at || 0) - (a.last_at || 0) || (a.id < b.id ? -1 : 1));
    return out;
  }

  // Unread conversations per view (for the navigation's counters), whatever the other filters.
  unreadByView(me) {
    const counts = { mine: 0, unassigned: 0, all: 0 };
    for (const c of this.byId.values()) {
      if (c.deleted || c.status === "resolved" || !(this.unread.get(c.id) > 0)) continue;
      counts.all++;
      if (c.assignee_id === me) counts.mine++;
      if (!c.assignee_id) counts.unassigned++;
    }
    return counts;
  }
}

// The view a new conversation filter implies for a REST query string.
export function filterQuery(filter, me) {
  const q = new URLSearchParams();
  if (filter.status && filter.status !== "all") q.set("status", filter.status);
  if (filter.view === "mine") q.set("assignee_id", me);
  if (filter.view === "unassigned") q.set("assignee_id", "none");
  if (filter.tag) q.set("tag", filter.tag);
  if (filter.app) q.set("app_id", filter.app);
  return q;
}
