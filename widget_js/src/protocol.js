// The websocket protocol as the widget speaks it (docs/protocol.md): what a close code tells
// the widget to do, the wire shape of a message, and one handler per server frame type.

// Close codes (docs/protocol.md, "Close codes"):
//   4000-4099 reconnect with backoff and jitter, then resume; 4003 token_expired and 4007
//             reauthenticate need a fresh token first; 4006 flood waits at least 5 s
//   4400-4499 terminal: the same credentials fail again. A new token from the admin API, at
//             most once; refused again, the widget stops and says so
//   anything else (1001, 1006, 1011, 1012, 1013, ...; 1009 after a frame too big, which the
//             widget never resends) reconnects with backoff
function closeAction(code) {
  if (code >= 4400 && code <= 4499) return { then: "reauth", terminal: true, wait: 0 };
  if (code === 4003 || code === 4007) return { then: "reauth", terminal: false, wait: 0 };
  return { then: "reconnect", terminal: false, wait: code === 4006 ? 5000 : 0 };
}

// Error codes that answer a send (error frame whose ref is the client_msg_id).
var SEND_RETRY = { rate_limited: 2000, unavailable: 0, internal: 0 };
var SEND_FAILED = {
  message_too_long: "Message is too long.",
  bad_frame: "",
  forbidden: ""
};

// A message object of the wire (docs/protocol.md) -> the thread's shape.
function normaliseMessage(raw, agents, appName) {
  if (!raw || typeof raw !== "object" || typeof raw.seq !== "number") return null;
  var mine = raw.author_kind === "contact";
  var agent = raw.author_kind === "member" && agents[raw.author_id];
  return {
    conversation_id: raw.conversation_id,
    seq: raw.seq,
    id: raw.id,
    cid: mine ? raw.client_msg_id || null : null,
    type: raw.type,
    mine: mine,
    author_id: raw.author_id,
    author: mine ? "" : agent ? agent.name || appName : appName,
    avatar: agent ? agent.avatar_url : null,
    body: raw.deleted ? "" : String(raw.body == null ? "" : raw.body),
    at: typeof raw.created_at === "number" ? raw.created_at : Date.parse(raw.created_at) || null,
    deleted: !!raw.deleted
  };
}

var H = Widget.prototype.handlers;

H.ready = function (f) {
  if (typeof f.server_time === "number") this.clockSkew = f.server_time - Date.now();
  var limits = f.limits || {};
  if (typeof limits.max_message_chars === "number" && limits.max_message_chars > 0) {
    this.maxChars = limits.max_message_chars;
    this.ui.setMaxLength(this.maxChars);
  }
  if (typeof limits.max_frame_bytes === "number" && limits.max_frame_bytes > 0) this.maxFrameBytes = limits.max_frame_bytes;
  this.authenticated();
};

H.ack = function (f) {
  var item = this.thread.findOutbox(f.client_msg_id || f.ref);
  if (!item || typeof f.conversation_id !== "string") return;
  // The shopper's latest message is in this conversation (the first one of a new
  // conversation, or a retry that had started one before a reload): show that one.
  if (f.conversation_id !== this.thread.id) this.adopt(f.conversation_id, f.seq === 1);
  var t = this.thread;
  t.dropOutbox(item.cid);
  this.saveOutbox();
  this.addMessage({ conversation_id: t.id, seq: f.seq, id: f.id, client_msg_id: item.cid, type: "incoming",
                    author_kind: "contact", author_id: this.contactId, body: item.body, created_at: f.created_at }, false, false);
  this.armAckTimer();
  // The conversation exists now: what waited for its id can go.
  this.flush();
};

H.message = function (f) {
  var m = f.message;
  if (!m || typeof m !== "object") return;
  if (!this.thread.id && m.conversation_id && m.type !== "note") this.adopt(m.conversation_id);
  if (m.conversation_id !== this.thread.id) return;
  this.addMessage(m, false, true);
};

H.history = function (f) {
  if (f.conversation_id !== this.thread.id) return;
  var list = f.messages || [];
  this.historyMore = !!f.more;
  this.historyPending = false;
  var keep = this.ui.keepScroll();
  var t = this.thread;
  for (var i = 0; i < list.length; i++) {
    this.addMessage(list[i], true, true);
    // Whoever wrote a message has seen everything before it (a new device knows no more).
    if (list[i].author_kind === "contact" && list[i].seq > t.readSeq) t.readSeq = list[i].seq;
  }
  keep();
  this.afterMessages();
};

H.resumed = function (f) {
  var id = this.thread.id;
  this.resuming = false;
  if (!id) return;
  if (f.not_found && f.not_found.indexOf(id) >= 0) {
    // The conversation was deleted: start over with a new one on the next send.
    this.adopt(null);
    return;
  }
  // Missed more than the gateway replays (docs/protocol.md): show the latest page instead.
  if (f.incomplete && f.incomplete.indexOf(id) >= 0) this.adopt(id);
};

H.typing = function (f) {
  if (f.conversation_id !== this.thread.id || !f.author || f.author.kind !== "member") return;
  var self = this;
  if (f.active === false) {
    this.ui.setTyping(null);
    this.timer("typingShown");
    return;
  }
  var agent = this.agents[f.author.id];
  this.ui.setTyping(agent && agent.name ? agent.name : TEXT.someone);
  this.timer("typingShown", TYPING_SHOWN_MS, function () { self.ui.setTyping(null); });
};

H.read = function (f) {
  if (f.conversation_id !== this.thread.id || !f.reader || f.reader.kind === "contact") return;
  if (!(f.seq > this.thread.seenSeq)) return;
  this.thread.seenSeq = f.seq;
  this.refreshOwn();
};

// A member's state, then the team's summary ("online" | "away"), which is what the header
// shows; a gateway that sends only members' states gets the summary computed here.
H.presence = function (f) {
  var subject = f.subject || {};
  if (subject.kind === "team") {
    this.teamState = true;
    this.online = f.state === "online";
  } else if (subject.kind === "member" && typeof subject.id === "string") {
    var agent = this.agents[subject.id] || (this.agents[subject.id] = { id: subject.id, name: "", avatar_url: null, hidden: true });
    agent.online = f.state === "online";
    if (!this.teamState) {
      var any = false;
      for (var k in this.agents) if (this.agents[k].online) any = true;
      this.online = any;
    }
  } else {
    return;
  }
  this.showTeam();
};

H["conversation.update"] = function (f) {
  var c = f.conversation || {};
  if (!c.id || c.id !== this.thread.id) return;
  if (c.deleted) {
    this.adopt(null);
    return;
  }
  if (c.status) this.thread.status = c.status;
  if (f.message && typeof f.message.seq === "number" && f.message.deleted) {
    var m = this.thread.markDeleted(f.message.seq);
    if (m) {
      this.ui.upsert(this.thread.view(m));
      this.setUnread();
    }
  }
};

H.error = function (f) {
  var item = f.ref ? this.thread.findOutbox(f.ref) : null;
  if (item) {
    this.sendFailed(item, f.code);
    return;
  }
  if (f.ref === "refresh") {
    // The gateway refused the refreshed token in-band: a new socket authenticates with it.
    this.drop();
    return;
  }
  if (f.ref === "resume") this.resuming = false;
  if (f.ref === "history") this.historyPending = false;
  if (f.code === "rate_limited" && !f.ref) {
    // A frame was dropped before it could be read: if it was a send, send again shortly.
    var self = this;
    this.timer("resend", 2000, function () {
      self.thread.requeue();
      self.flush();
    });
    return;
  }
  this.warn("gateway error " + f.code);
};
