// The widget's decisions as pure functions and one small class, driven by tests without a
// network: what a close code means, how long to back off, how identify calls combine, and the
// conversation thread (ordering, de-duplication, resume point, outbox, unread count).

var BACKOFF_BASE_MS = 800;
var BACKOFF_CAP_MS = 30000;

// "Equal jitter": half the exponential delay fixed, half random, so a gateway restart spreads
// its clients' reconnects over time while no client retries in a tight loop.
function backoffDelay(attempt, random) {
  var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, Math.min(attempt, 16)));
  return Math.round(ceiling / 2 + (random ? random() : Math.random()) * ceiling / 2);
}

var IDENTIFY_FIELDS = ["email", "external_id", "name", "company", "phone", "avatar_url", "custom_data", "user_hash", "shop", "shop_hash"];

// Keeps the documented fields, strings only (custom_data: a flat object); reports the rest.
function cleanIdentify(input, warn) {
  var out = {};
  if (!input || typeof input !== "object") {
    warn("identify expects an object");
    return out;
  }
  for (var key in input) {
    if (!Object.prototype.hasOwnProperty.call(input, key)) continue;
    var value = input[key];
    if (IDENTIFY_FIELDS.indexOf(key) < 0) {
      warn("identify: unknown field " + key + " ignored");
    } else if (key === "custom_data") {
      if (value && typeof value === "object" && !Array.isArray(value)) out.custom_data = value;
      else warn("identify: custom_data must be an object");
    } else if (typeof value === "string" || value === null) {
      out[key] = value;
    } else if (typeof value === "number" && key === "external_id") {
      out[key] = String(value);
    } else {
      warn("identify: " + key + " must be a string");
    }
  }
  return out;
}

// Later calls win field by field; custom_data merges key by key and keeps nulls (a null
// clears that key on the server).
function mergeIdentify(base, extra) {
  var out = {};
  var k;
  for (k in base) out[k] = base[k];
  for (k in extra) {
    if (k === "custom_data" && out.custom_data) {
      var merged = {};
      var c;
      for (c in out.custom_data) merged[c] = out.custom_data[c];
      for (c in extra.custom_data) merged[c] = extra.custom_data[c];
      out.custom_data = merged;
    } else {
      out[k] = extra[k];
    }
  }
  return out;
}

// Lifetime of a JWT in seconds (exp - iat), read without verifying: it only schedules the
// refresh, and unlike `expires_at` it does not depend on this browser's clock being right.
function tokenLifetime(token) {
  try {
    var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    var claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    var life = claims.exp - claims.iat;
    return life > 0 ? life : null;
  } catch (e) {
    return null;
  }
}

// When to refresh a token of `lifetime` seconds: at 80% of it and at least 20 s before it
// expires, but never before half of it has passed.
function refreshDelay(lifetime) {
  var life = Math.max(lifetime, 5);
  return Math.max(life * 0.5, Math.min(life * 0.8, life - 20)) * 1000;
}

// One conversation as the shopper sees it.
//   items:   seq -> message (normalised: seq, id, cid, type, mine, author_id, author,
//            avatar, body, at, deleted)
//   lastSeq: highest seq *received* from the gateway (message, history, resume replay) —
//            what resume asks from. Gaps below it are normal for a shopper (private notes
//            take sequence numbers too, docs/protocol.md), and a seq known only from our own
//            ack does not count: the fan-out of an earlier message may still be on its way.
//   maxSeq:  highest seq known at all (acks included) — how far the shopper has read
//   outbox:  messages not yet acknowledged, in the order typed; each keeps its client id
//            for every retry, so the server stores it once
function Thread() {
  this.reset(null, 0);
  this.outbox = [];
}

Thread.prototype.reset = function (id, readSeq) {
  this.id = id || null;
  this.items = {};
  this.seqs = [];
  this.lastSeq = 0;
  this.maxSeq = 0;
  this.readSeq = readSeq || 0;      // the shopper has read up to here
  this.seenSeq = 0;                 // an agent has read the shopper's messages up to here
  this.status = null;
};

Thread.prototype.lowestSeq = function () {
  return this.seqs.length ? this.seqs[0] : 0;
};

// Adds a message; `received`: it came from the gateway as a message (not from our ack).
// Returns "new", "dup" (already had it) or "updated" (a tombstone of a message we had).
Thread.prototype.add = function (m, received) {
  if (!(m.seq > 0)) return "dup";
  if (received && m.seq > this.lastSeq) this.lastSeq = m.seq;
  var old = this.items[m.seq];
  if (old) {
    // Same message seen again (fan-out of our own acknowledged send, resume overlap): one copy.
    if (m.deleted && !old.deleted) {
      old.deleted = true;
      return "updated";
    }
    return "dup";
  }
  this.items[m.seq] = m;
  var i = this.seqs.length;
  while (i > 0 && this.seqs[i - 1] > m.seq) i--;
  this.seqs.splice(i, 0, m.seq);
  if (m.seq > this.maxSeq) this.maxSeq = m.seq;
  if (m.cid) this.dropOutbox(m.cid);
  return "new";
};

Thread.prototype.markDeleted = function (seq) {
  var m = this.items[seq];
  if (!m || m.deleted) return null;
  m.deleted = true;
  return m;
};

Thread.prototype.queue = function (body, at) {
  var item = { cid: randomId(), body: body, at: at, status: "queued", error: null };
  this.outbox.push(item);
  return item;
};

Thread.prototype.findOutbox = function (cid) {
  for (var i = 0; i < this.outbox.length; i++) if (this.outbox[i].cid === cid) return this.outbox[i];
  return null;
};

Thread.prototype.dropOutbox = function (cid) {
  for (var i = 0; i < this.outbox.length; i++) {
    if (this.outbox[i].cid === cid) return this.outbox.splice(i, 1)[0];
  }
  return null;
};

// What to send now: queued items in typed order. Until the conversation exists only the
// first is sent (its ack tells the conversation id the rest must go to).
Thread.prototype.sendable = function () {
  var out = [];
  for (var i = 0; i < this.outbox.length; i++) {
    var item = this.outbox[i];
    if (item.status === "failed") continue;
    if (item.status === "queued") out.push(item);
    if (!this.id) break;
  }
  return out;
};

// After a disconnect nothing sent is known to have arrived: everything goes again.
Thread.prototype.requeue = function () {
  for (var i = 0; i < this.outbox.length; i++) {
    if (this.outbox[i].status === "sending") this.outbox[i].status = "queued";
  }
};

Thread.prototype.unread = function () {
  var n = 0;
  for (var i = this.seqs.length - 1; i >= 0 && this.seqs[i] > this.readSeq; i--) {
    var m = this.items[this.seqs[i]];
    if (!m.mine && m.type !== "activity" && !m.deleted) n++;
  }
  return n;
};

// The view model the UI renders for a stored message or an outbox item.
Thread.prototype.view = function (m) {
  if (!m.seq) {
    return { key: m.cid, seq: Infinity, mine: true, kind: "incoming", author: "", avatar: null,
             body: m.body, at: m.at, deleted: false, status: m.status === "failed" ? "failed" : "sending", error: m.error };
  }
  return { key: m.cid || "s" + m.seq, seq: m.seq, mine: m.mine, kind: m.type, author: m.author, avatar: m.avatar,
           body: m.body, at: m.at, deleted: !!m.deleted,
           status: m.mine ? (this.seenSeq >= m.seq ? "seen" : "sent") : null, error: null };
};
