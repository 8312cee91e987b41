// The widget: session (HTTP, docs/widget.md), connection (websocket, docs/protocol.md),
// thread and UI wired together, and the public API on window.Convot.

var STATE = { IDLE: "idle", CONNECTING: "connecting", AUTHENTICATING: "authenticating", OPEN: "open", WAITING: "waiting", STOPPED: "stopped" };
var AUTH_TIMEOUT_MS = 10000;
var ANSWER_TIMEOUT_MS = 15000;      // a request without any frame back: the socket is dead
var IDLE_PING_MS = 25000;
var TYPING_EVERY_MS = 2500;
var TYPING_SHOWN_MS = 6000;
var STABLE_MS = 10000;
var HISTORY_PAGE = 50;

function Widget(win, config) {
  var self = this;
  this.win = win;
  this.appId = config.app_id;
  this.api = config.api_base;
  this.store = new Store("convot:" + this.appId + ":");
  this.identity = {};
  this.contactId = null;
  this.contact = null;
  this.session = null;
  this.settings = {};
  this.appName = "";
  this.token = null;
  this.tokenAt = 0;
  this.thread = new Thread();
  this.agents = {};
  this.online = false;
  this.state = STATE.IDLE;
  this.ws = null;
  this.attempt = 0;
  this.sessionAttempt = 0;
  this.reauthed = false;
  this.timers = {};
  this.view = { open: false, visible: true };
  this.readyFns = [];
  this.unreadFns = [];
  this.isReady = false;
  this.unread = 0;
  this.typingSentAt = 0;
  this.sessionInFlight = null;
  this.generation = 0;              // bumped by reset(): answers of older requests are dropped
  this.maxFrameBytes = 65536;       // gateway.max_frame_bytes, from ready
  this.ui = new UI(win, {
    side: config.position,
    on: {
      toggle: function (user) { self.setView(!self.view.open, true, user); },
      close: function (user) { self.setView(false, self.view.visible, user); },
      send: function (text) { self.send(text); },
      typing: function (active) { self.typing(active); },
      retry: function (cid) { self.retry(cid); },
      email: function (email) { self.saveEmail(email); },
      scrolled: function (top) { self.scrolled(top); },
      rebuilt: function () { self.render(); }
    }
  });
  this.api_ = this.publicApi();
  this.ui.mount(function () {
    self.render();
    self.startSession();
  });
  // Read in another tab of this shop: not unread here either.
  win.addEventListener("storage", function (ev) {
    var t = self.thread;
    if (!t.id || ev.key !== self.store.prefix + "read:" + t.id) return;
    var seq = self.store.get("read:" + t.id);
    if (typeof seq === "number" && seq > t.readSeq) {
      t.readSeq = seq;
      self.setUnread();
    }
  });
  win.addEventListener("online", function () { self.wake(); });
  win.addEventListener("offline", function () { self.showConnection(); });
  win.document.addEventListener("visibilitychange", function () {
    if (win.document.visibilityState === "visible") {
      self.wake();
      self.markRead();
    }
  });
  // A page going into the back/forward cache must not hold a socket (it would be evicted
  // from the cache); it reconnects when shown again.
  win.addEventListener("pagehide", function (ev) {
    if (ev.persisted) self.disconnect(STATE.IDLE);
  });
  win.addEventListener("pageshow", function (ev) {
    if (ev.persisted) self.connect();
  });
}

Widget.prototype.warn = function (text) {
  if (this.win.console) this.win.console.warn("Convot: " + text);
};

// ---- public API ---------------------------------------------------------------------------

Widget.prototype.publicApi = function () {
  var self = this;
  return {
    open: function () { self.setView(true, true, false); },
    close: function () { self.setView(false, self.view.visible, false); },
    toggle: function () { self.setView(!self.view.open, true, false); },
    show: function () { self.setView(self.view.open, true, false); },
    hide: function () { self.setView(false, false, false); },
    identify: function (fields) { self.identify(fields); },
    reset: function () { self.reset(); },
    onReady: function (fn) {
      if (typeof fn !== "function") return;
      if (self.isReady) self.later(fn, []);
      else self.readyFns.push(fn);
    },
    onUnreadCountChange: function (fn) {
      if (typeof fn !== "function") return;
      self.unreadFns.push(fn);
      if (self.isReady) self.later(fn, [self.unread]);
    }
  };
};

// Runs one queued command: ["open"], ["identify", {...}], ["onReady", fn] ...
Widget.prototype.command = function (cmd) {
  if (!cmd || typeof cmd !== "object" || typeof cmd.length !== "number" || !cmd.length) {
    this.warn("push expects an array such as [\"open\"]");
    return;
  }
  var name = cmd[0];
  var fn = Object.prototype.hasOwnProperty.call(this.api_, name) ? this.api_[name] : null;
  if (typeof fn !== "function") {
    this.warn("unknown command " + String(name));
    return;
  }
  fn.apply(null, Array.prototype.slice.call(cmd, 1));
};

Widget.prototype.drain = function (queue) {
  for (var i = 0; queue && i < queue.length; i++) this.command(queue[i]);
};

// Callbacks of the host page run on their own turn; one that throws does not break the widget.
Widget.prototype.later = function (fn, args) {
  var win = this.win;
  win.setTimeout(function () {
    try {
      fn.apply(null, args);
    } catch (e) {
      if (win.console) win.console.error(e);
    }
  }, 0);
};

// ---- view ---------------------------------------------------------------------------------

// `user`: the shopper did it (launcher, close button, Escape), so focus follows.
Widget.prototype.setView = function (open, visible, user) {
  this.view.open = !!(open && visible);
  this.view.visible = !!visible;
  if (!this.ui.doc) return;
  this.ui.setView(this.view.open, this.view.visible, user);
  this.markRead();
};

// Everything the UI shows, from the widget's state: after the first mount, and after the
// host page removed the frame and it was put back with a fresh document.
Widget.prototype.render = function () {
  var ui = this.ui;
  var t = this.thread;
  ui.setApp({ name: this.appName, colour: this.settings.color, greeting: this.settings.greeting });
  this.showTeam();
  ui.setView(this.view.open, this.view.visible, false);
  if (this.maxChars) ui.setMaxLength(this.maxChars);
  for (var i = 0; i < t.seqs.length; i++) ui.upsert(t.view(t.items[t.seqs[i]]));
  for (var k = 0; k < t.outbox.length; k++) ui.upsert(t.view(t.outbox[k]));
  ui.setUnread(t.unread());
  this.showEmailPrompt();
  this.showConnection();
  ui.scrollDown(true);
};

// ---- session ------------------------------------------------------------------------------

Widget.prototype.startSession = function () {
  var self = this;
  var gen = this.generation;
  this.requestSession().then(function (data) {
    if (gen !== self.generation) return;
    self.sessionAttempt = 0;
    self.applySession(data);
    self.connect();
    if (!self.isReady) {
      self.isReady = true;
      var fns = self.readyFns;
      self.readyFns = [];
      for (var i = 0; i < fns.length; i++) self.later(fns[i], []);
      for (var j = 0; j < self.unreadFns.length; j++) self.later(self.unreadFns[j], [self.unread]);
    }
  }, function (err) {
    if (gen !== self.generation) return;
    if (err.terminal) {
      self.stop(err.code);
      return;
    }
    self.timer("session", Math.max(err.retryAfter, backoffDelay(self.sessionAttempt++)), function () { self.startSession(); });
  });
};

// POST {api}/v1/widget/session (docs/widget.md). Resolves with the session; rejects with
// {code, terminal, retryAfter}. One request at a time; concurrent callers share it.
Widget.prototype.requestSession = function () {
  var self = this;
  if (this.sessionInFlight) return this.sessionInFlight;
  var visitor = this.store.get("visitor");
  var body = { app_id: this.appId, visitor_token: typeof visitor === "string" ? visitor : null, identify: null };
  this.sentIdentity = this.identity;
  for (var k in this.identity) {
    body.identify = this.identity;
    break;
  }
  var p = this.win.fetch(this.api + "/v1/widget/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    mode: "cors",
    cache: "no-store"
  }).then(function (res) {
    return res.json().catch(function () { return null; }).then(function (data) {
      if (res.ok && data && typeof data.token === "string" && typeof data.gateway_url === "string") return data;
      var code = (data && data.error && data.error.code) || "http_" + res.status;
      var retryAfter = parseInt(res.headers.get("Retry-After"), 10);
      // Client errors other than throttling will not change by retrying.
      var terminal = res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429;
      throw { code: code, terminal: terminal, retryAfter: retryAfter > 0 ? retryAfter * 1000 : 0 };
    });
  }, function () {
    throw { code: "network", terminal: false, retryAfter: 0 };
  });
  this.sessionInFlight = p;
  var done = function () { self.sessionInFlight = null; };
  p.then(done, done);
  return p;
};

Widget.prototype.applySession = function (data) {
  var app = data.app || {};
  var settings = app.settings || {};
  this.session = data;
  this.token = data.token;
  this.tokenAt = Date.now();
  this.settings = settings;
  this.appName = typeof app.name === "string" ? app.name : "";
  if (typeof data.visitor_token === "string" && data.visitor_token) this.store.set("visitor", data.visitor_token);
  this.ui.setApp({ name: this.appName, colour: settings.color, greeting: settings.greeting });
  var team = data.team || {};
  var list = team.agents || [];
  for (var i = 0; i < list.length; i++) {
    if (list[i] && typeof list[i].id === "string") this.agents[list[i].id] = list[i];
  }
  this.online = !!team.online;
  this.showTeam();
  var contact = data.contact || {};
  if (contact.id !== this.contactId) this.switchContact(contact.id, data.conversations || []);
  this.contact = contact;
  this.showEmailPrompt();
  this.scheduleRefresh();
  // identify() was called while this session was being requested.
  if (this.sentIdentity !== this.identity) {
    var self = this;
    this.timer("identify", 0, function () { self.refreshSession(true).catch(function () {}); });
  }
};

// A (new) contact: show their latest conversation, and keep what was typed but not yet sent
// (stored per contact, so a reload sends it too).
Widget.prototype.switchContact = function (contactId, conversations) {
  var previous = this.contactId;
  var unsent = previous ? this.thread.outbox : [];
  if (previous && this.ws) this.disconnect(STATE.IDLE);
  this.contactId = contactId;
  var latest = conversations[0] && typeof conversations[0].id === "string" ? conversations[0] : null;
  this.thread = new Thread();
  this.thread.reset(latest ? latest.id : null, latest ? this.readPosition(latest.id, latest.read_seq) : 0);
  this.thread.status = latest ? latest.status : null;
  this.historyPending = false;
  this.historyMore = false;
  this.resuming = false;
  var stored = this.store.get("outbox:" + contactId);
  var outbox = [];
  for (var s = 0; stored && s < stored.length; s++) {
    var o = stored[s];
    if (o && typeof o.cid === "string" && typeof o.body === "string") outbox.push(o);
  }
  // Typed as the previous contact: sent as this one, to this contact's conversation.
  for (var u = 0; u < unsent.length; u++) {
    unsent[u].to = undefined;
    outbox.push(unsent[u]);
  }
  for (var i = 0; i < outbox.length; i++) {
    if (outbox[i].status !== "failed") outbox[i].status = "queued";
  }
  this.thread.outbox = outbox;
  if (previous) this.store.set("outbox:" + previous, null);
  this.saveOutbox();
  this.ui.clear();
  for (var k = 0; k < outbox.length; k++) this.ui.upsert(this.thread.view(outbox[k]));
  this.setUnread();
};

// The shopper signed out of the site: forget this browser's visitor, identity, unsent
// messages and read positions, and start over as a new anonymous visitor, so the next person
// on this computer never sees their conversations.
Widget.prototype.reset = function () {
  this.generation++;
  this.sessionInFlight = null;
  this.disconnect(STATE.IDLE);
  for (var name in this.timers) this.timer(name);
  this.store.clear();
  this.identity = {};
  this.session = null;
  this.contact = null;
  this.contactId = null;
  this.token = null;
  this.everOpen = false;
  this.thread = new Thread();
  this.ui.clear();
  this.ui.setTyping(null);
  this.ui.setEmailPrompt(false);
  this.setUnread();
  this.showConnection();
  if (this.ui.doc) this.startSession();
};

// How far the shopper has read: the server's position if it keeps one, else this browser's.
Widget.prototype.readPosition = function (id, serverSeq) {
  var local = this.store.get("read:" + id);
  return Math.max(typeof serverSeq === "number" ? serverSeq : 0, typeof local === "number" ? local : 0);
};

Widget.prototype.identify = function (fields) {
  var self = this;
  var clean = cleanIdentify(fields, function (t) { self.warn(t); });
  var any = false;
  for (var k in clean) any = true;
  if (!any) return;
  this.identity = mergeIdentify(this.identity, clean);
  // Before the first session the fields go with it (or with the one after the request in
  // flight: see applySession); a widget stopped by a refusal tries again with them.
  if (this.session) this.refreshSession(true).catch(function () {});
  else if (this.state === STATE.STOPPED) {
    this.state = STATE.IDLE;
    this.startSession();
  }
};

// A fresh session: new token, updated contact. The open socket gets the token in-band;
// a different contact (identify) needs a socket of its own.
Widget.prototype.refreshSession = function (explicit) {
  var self = this;
  var gen = this.generation;
  return this.requestSession().then(function (data) {
    if (gen !== self.generation) return data;
    self.sessionAttempt = 0;
    var sameContact = data.contact && data.contact.id === self.contactId;
    // A new identity is new credentials: a widget stopped by a terminal close may try again.
    if (self.state === STATE.STOPPED && explicit) self.state = STATE.IDLE;
    self.applySession(data);
    if (sameContact && self.state === STATE.OPEN) self.rawSend({ type: "token.refresh", token: data.token, ref: "refresh" }) && self.expectAnswer();
    else self.connect();
    return data;
  }, function (err) {
    if (gen !== self.generation) throw err;
    if (err.terminal) {
      self.warn("session refused: " + err.code);
      if (self.state !== STATE.OPEN && self.state !== STATE.STOPPED) self.stop(err.code);
    } else self.timer("refresh", Math.max(err.retryAfter, backoffDelay(self.sessionAttempt++)), function () {
      self.refreshSession().catch(function () {});
    });
    throw err;
  });
};

Widget.prototype.tokenLife = function () {
  var life = tokenLifetime(this.token);
  return life || Math.max(30, (this.session.expires_at || 0) - (Date.now() + (this.clockSkew || 0)) / 1000);
};

Widget.prototype.scheduleRefresh = function () {
  var self = this;
  if (this.state === STATE.STOPPED) return;
  this.timer("refresh", refreshDelay(this.tokenLife()), function () {
    self.refreshSession().catch(function () {});
  });
};

// Timers stop while a laptop sleeps; a token that is due for refresh is renewed before use.
Widget.prototype.tokenStale = function () {
  return Date.now() - this.tokenAt >= refreshDelay(this.tokenLife());
};

Widget.prototype.saveEmail = function (email) {
  var self = this;
  this.identity = mergeIdentify(this.identity, { email: email });
  this.refreshSession().then(function () {
    self.ui.setEmailError("");
    self.showEmailPrompt();
  }, function () {
    self.ui.setEmailError(TEXT.emailFailed);
  });
};

Widget.prototype.showEmailPrompt = function () {
  var mine = this.thread.outbox.length > 0;
  for (var seq in this.thread.items) if (this.thread.items[seq].mine) mine = true;
  this.ui.setEmailPrompt(!!(this.settings.email_prompt && this.contact && !this.contact.email && mine));
};

// ---- connection ---------------------------------------------------------------------------

Widget.prototype.timer = function (name, ms, fn) {
  var timers = this.timers;
  this.win.clearTimeout(timers[name]);
  delete timers[name];
  if (fn) {
    timers[name] = this.win.setTimeout(function () {
      delete timers[name];
      fn();
    }, ms);
  }
};

Widget.prototype.connect = function () {
  var self = this;
  if (!this.session || this.state !== STATE.IDLE && this.state !== STATE.WAITING) return;
  if (this.tokenStale()) {
    this.state = STATE.WAITING;
    this.refreshSession().catch(function () {});
    return;
  }
  this.timer("retry");
  this.state = STATE.CONNECTING;
  this.showConnection();
  var ws;
  try {
    ws = new this.win.WebSocket(this.session.gateway_url);
  } catch (e) {
    this.stop("bad_gateway_url");
    return;
  }
  this.ws = ws;
  ws.onopen = function () {
    if (self.ws !== ws) return;
    self.state = STATE.AUTHENTICATING;
    self.rawSend({ type: "authenticate", token: self.token, ref: "auth" });
    self.timer("answer", AUTH_TIMEOUT_MS, function () { self.drop(); });
  };
  ws.onmessage = function (ev) {
    if (self.ws !== ws) return;
    var frame;
    try {
      frame = JSON.parse(ev.data);
    } catch (e) {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    self.alive();
    var handler = Object.prototype.hasOwnProperty.call(self.handlers, frame.type) ? self.handlers[frame.type] : null;
    if (handler && (self.state === STATE.OPEN || frame.type === "ready" || frame.type === "error")) handler.call(self, frame);
  };
  ws.onclose = function (ev) {
    if (self.ws !== ws) return;
    self.closed(ev.code, ev.reason);
  };
  ws.onerror = function () {};
};

Widget.prototype.handlers = {};

Widget.prototype.rawSend = function (frame) {
  if (!this.ws || this.ws.readyState !== 1) return false;
  try {
    this.ws.send(JSON.stringify(frame));
    return true;
  } catch (e) {
    return false;
  }
};

Widget.prototype.sendFrame = function (frame) {
  return this.state === STATE.OPEN && this.rawSend(frame);
};

// Liveness: any frame from the gateway proves the socket; a quiet socket gets a ping, and a
// request nobody answers in time means the connection is gone without a close (sleep,
// network change): drop it and reconnect.
Widget.prototype.alive = function () {
  var self = this;
  if (this.state !== STATE.OPEN) return;
  this.timer("answer");
  this.timer("idle", IDLE_PING_MS, function () {
    if (self.sendFrame({ type: "ping", ref: "ping" })) self.expectAnswer();
  });
};

Widget.prototype.expectAnswer = function () {
  var self = this;
  if (!this.timers.answer) this.timer("answer", ANSWER_TIMEOUT_MS, function () { self.drop(); });
};

Widget.prototype.drop = function () {
  var ws = this.ws;
  if (!ws) return;
  this.ws = null;
  try {
    ws.close();
  } catch (e) {
    // already closing
  }
  this.closed(1006, "");
};

Widget.prototype.disconnect = function (next) {
  var ws = this.ws;
  this.ws = null;
  this.timer("answer");
  this.timer("idle");
  if (ws) {
    try {
      ws.close(1000);
    } catch (e) {
      // already closing
    }
  }
  this.thread.requeue();
  this.state = next;
};

Widget.prototype.closed = function (code, reason) {
  var self = this;
  this.ws = null;
  this.timer("answer");
  this.timer("idle");
  this.timer("acks");
  this.thread.requeue();
  this.resuming = false;
  this.historyPending = false;
  // Backoff starts over only after a connection that held for a while: a gateway that
  // accepts and then drops every socket must not be hammered.
  var stable = this.state === STATE.OPEN && Date.now() - this.openedAt > STABLE_MS;
  var action = closeAction(code);
  if (stable) {
    this.attempt = 0;
    this.reauthed = false;
  }
  if (action.terminal && this.reauthed) {
    this.stop("closed_" + code + (reason ? ":" + reason : ""));
    return;
  }
  this.state = STATE.WAITING;
  this.showConnection();
  var delay = Math.max(action.wait, backoffDelay(this.attempt++));
  if (action.then === "reauth") {
    // A fresh token first (expired, revoked, refused), then a new socket. After a terminal
    // close this happens once; the next terminal close stops the widget.
    if (action.terminal) this.reauthed = true;
    this.timer("retry", delay, function () { self.refreshSession().catch(function () {}); });
  } else {
    this.timer("retry", delay, function () { self.connect(); });
  }
};

Widget.prototype.stop = function (code) {
  this.disconnect(STATE.STOPPED);
  for (var name in this.timers) this.timer(name);
  this.warn("chat unavailable (" + code + ")");
  this.showConnection();
};

// Back online / tab visible again: skip the rest of the backoff.
Widget.prototype.wake = function () {
  if (this.state !== STATE.WAITING || !this.timers.retry) return;
  this.attempt = 0;
  this.connect();
};

Widget.prototype.showConnection = function () {
  if (!this.ui.doc) return;
  var s = this.state;
  if (s === STATE.STOPPED) this.ui.setBanner(TEXT.unavailable, true);
  else if (this.win.navigator.onLine === false) this.ui.setBanner(TEXT.offline);
  else if (s === STATE.WAITING || this.everOpen && s !== STATE.OPEN) this.ui.setBanner(TEXT.reconnecting);
  else this.ui.setBanner("");
};

// ---- conversation -------------------------------------------------------------------------

Widget.prototype.authenticated = function () {
  this.timer("answer");
  this.state = STATE.OPEN;
  this.openedAt = Date.now();
  this.everOpen = true;
  this.showConnection();
  this.alive();
  this.load();
  this.flush();
  if (this.readDirty) this.markRead();
};

// After (re)authenticating: the latest page for a conversation not loaded yet, otherwise
// exactly what was missed since the last message received.
Widget.prototype.load = function () {
  var t = this.thread;
  if (!t.id) return;
  if (!t.seqs.length && !this.historyPending) {
    this.historyPending = true;
    if (this.sendFrame({ type: "history", conversation_id: t.id, limit: HISTORY_PAGE, ref: "history" })) this.expectAnswer();
  } else if (t.seqs.length) {
    this.resume();
  }
};

Widget.prototype.resume = function () {
  var t = this.thread;
  if (!t.id || this.resuming) return;
  var convs = {};
  convs[t.id] = t.lastSeq;
  if (this.sendFrame({ type: "resume", conversations: convs, ref: "resume" })) {
    this.resuming = true;
    this.expectAnswer();
  }
};

Widget.prototype.scrolled = function (top) {
  var t = this.thread;
  if (top && this.historyMore && !this.historyPending && t.id && t.seqs.length) {
    this.historyPending = true;
    if (this.sendFrame({ type: "history", conversation_id: t.id, before_seq: t.lowestSeq(), limit: HISTORY_PAGE, ref: "history" })) this.expectAnswer();
    else this.historyPending = false;
  }
  this.markRead();
};

// The shopper's conversation changes: the first send created it (`created`: nothing to
// load), an agent started one, or it was deleted (null).
Widget.prototype.adopt = function (id, created) {
  var outbox = this.thread.outbox;
  this.thread = new Thread();
  this.thread.reset(id, id ? this.readPosition(id) : 0);
  this.thread.outbox = outbox;
  this.historyMore = false;
  this.historyPending = false;
  this.resuming = false;
  this.readDirty = false;
  this.ui.clear();
  for (var k = 0; k < outbox.length; k++) this.ui.upsert(this.thread.view(outbox[k]));
  this.setUnread();
  if (this.state === STATE.OPEN && !created) this.load();
};

// `batch`: part of a history page (rendered together, not announced); `received`: from the
// gateway rather than from our own ack (moves the resume point).
Widget.prototype.addMessage = function (raw, batch, received) {
  var m = normaliseMessage(raw, this.agents, this.appName);
  if (!m || m.type === "note") return;
  var t = this.thread;
  var result = t.add(m, received);
  if (result === "dup") return;
  this.ui.upsert(t.view(t.items[m.seq]), !batch);
  if (!m.mine && m.type !== "activity") {
    this.ui.setTyping(null);
    this.timer("typingShown");
  }
  if (batch) return;
  this.afterMessages();
};

Widget.prototype.afterMessages = function () {
  this.setUnread();
  this.markRead();
  this.showEmailPrompt();
};

// Own messages show Sent / Seen on the latest one.
Widget.prototype.refreshOwn = function () {
  var t = this.thread;
  for (var i = t.seqs.length - 1; i >= 0; i--) {
    var m = t.items[t.seqs[i]];
    if (m.mine) {
      this.ui.upsert(t.view(m));
      return;
    }
  }
};

// Sends every queued message in typed order. A retry repeats the first attempt exactly:
// same client_msg_id and same target (a message that started a conversation is retried as
// starting one — the gateway deduplicates per target), so it is stored once.
Widget.prototype.flush = function () {
  if (this.state !== STATE.OPEN) return;
  var items = this.thread.sendable();
  var fresh = false;
  for (var i = 0; i < items.length; i++) {
    var item = items[i];
    if (item.to === undefined) {
      item.to = this.thread.id;
      fresh = true;
    }
    var frame = { type: "send", client_msg_id: item.cid, body: item.body, ref: item.cid };
    if (item.to) frame.conversation_id = item.to;
    if (frameBytes(frame) > this.maxFrameBytes) {
      // The gateway would close the socket (1009); the message could never go.
      this.sendFailed(item, "message_too_long");
      continue;
    }
    if (!this.rawSend(frame)) break;
    item.status = "sending";
    item.sentAt = Date.now();
  }
  if (fresh) this.saveOutbox();
  this.armAckTimer();
};

// Every send gets an ack or an error. One that got neither in time (its frame dropped by
// a rate limit that could not name it, say) goes again, same client id, on the same socket.
Widget.prototype.armAckTimer = function () {
  var self = this;
  var now = Date.now();
  var waiting = false;
  var late = false;
  for (var i = 0; i < this.thread.outbox.length; i++) {
    var item = this.thread.outbox[i];
    if (item.status !== "sending") continue;
    if (now - item.sentAt >= ANSWER_TIMEOUT_MS) {
      item.status = "queued";
      late = true;
    } else {
      waiting = true;
    }
  }
  if (late) {
    this.flush();
    return;
  }
  if (!waiting) {
    this.timer("acks");
    return;
  }
  this.expectAnswer();
  if (!this.timers.acks) this.timer("acks", ANSWER_TIMEOUT_MS, function () { self.armAckTimer(); });
};

Widget.prototype.sendFailed = function (item, code) {
  var self = this;
  if (code === "not_found" && item.to) {
    // The conversation is gone (deleted): what was meant for it starts a new one. Nothing
    // was stored, so sending it as a new conversation cannot make a duplicate.
    var gone = item.to;
    var outbox = this.thread.outbox;
    for (var i = 0; i < outbox.length; i++) {
      if (outbox[i].to === gone) {
        outbox[i].to = undefined;
        outbox[i].status = outbox[i].status === "failed" ? "failed" : "queued";
      }
    }
    if (this.thread.id === gone) this.adopt(null);
    this.saveOutbox();
    this.flush();
    return;
  }
  if (Object.prototype.hasOwnProperty.call(SEND_RETRY, code)) {
    item.status = "queued";
    this.timer("resend", Math.max(SEND_RETRY[code], backoffDelay(this.attempt)), function () { self.flush(); });
    return;
  }
  item.status = "failed";
  item.error = SEND_FAILED[code] || "";
  this.saveOutbox();
  this.ui.upsert(this.thread.view(item));
};

Widget.prototype.send = function (text) {
  var body = String(text).replace(/^\s+|\s+$/g, "");
  if (!body) return;
  var item = this.thread.queue(body, Date.now());
  this.saveOutbox();
  this.ui.upsert(this.thread.view(item));
  this.showEmailPrompt();
  this.typingSentAt = 0;
  this.flush();
};

Widget.prototype.retry = function (cid) {
  var item = this.thread.findOutbox(cid);
  if (!item) return;
  item.status = "queued";
  item.error = null;
  this.ui.upsert(this.thread.view(item));
  this.saveOutbox();
  this.flush();
};

Widget.prototype.saveOutbox = function () {
  if (!this.contactId) return;
  var list = [];
  for (var i = 0; i < this.thread.outbox.length; i++) {
    var o = this.thread.outbox[i];
    list.push({ cid: o.cid, body: o.body, at: o.at, to: o.to, status: o.status === "failed" ? "failed" : "queued", error: o.error });
  }
  this.store.set("outbox:" + this.contactId, list.length ? list : null);
};

// Typing: at most one frame every few seconds while the shopper types, and one when the
// box is emptied (so the agent's indicator does not linger).
Widget.prototype.typing = function (active) {
  var now = Date.now();
  if (!this.thread.id) return;
  if (active && now - this.typingSentAt < TYPING_EVERY_MS) return;
  if (!active && !this.typingSentAt) return;
  if (this.sendFrame({ type: "typing", conversation_id: this.thread.id, active: active })) this.typingSentAt = active ? now : 0;
};

// The shopper has read everything when the panel is open on a visible page. A receipt goes
// out only when there was something from the team to read, once per burst of messages.
Widget.prototype.markRead = function () {
  var self = this;
  var t = this.thread;
  if (this.ui.doc && this.ui.isReading() && t.id && t.maxSeq > t.readSeq) {
    if (t.unread()) this.readDirty = true;
    t.readSeq = t.maxSeq;
    this.store.set("read:" + t.id, t.readSeq);
    this.setUnread();
  }
  if (!this.readDirty) return;
  this.timer("read", 300, function () {
    if (self.thread === t && self.sendFrame({ type: "read", conversation_id: t.id, seq: t.readSeq })) self.readDirty = false;
  });
};

Widget.prototype.setUnread = function () {
  var n = this.thread.unread();
  this.ui.setUnread(n);
  if (n === this.unread) return;
  this.unread = n;
  if (!this.isReady) return;
  for (var i = 0; i < this.unreadFns.length; i++) this.later(this.unreadFns[i], [n]);
};

Widget.prototype.showTeam = function () {
  var list = [];
  for (var id in this.agents) if (!this.agents[id].hidden) list.push(this.agents[id]);
  this.ui.setTeam(this.online, list);
};
