// The widget's user interface: one iframe on the host page whose document the widget builds
// itself. Host CSS cannot reach inside the iframe, and every style the host could set on the
// iframe element is pinned inline with !important (inline important declarations beat any
// stylesheet). The UI only renders what it is told and reports what the shopper does; all
// decisions live in the Widget (widget.js).

var TEXT = {
  open: "Open chat",
  close: "Close chat",
  minimise: "Minimise chat",
  title: "Chat",
  messages: "Messages",
  input: "Message",
  placeholder: "Write a message\u2026",
  send: "Send",
  online: "Online",
  away: "Away \u2014 we'll get back to you",
  typing: " is typing\u2026",
  someone: "Someone",
  sending: "Sending\u2026",
  sent: "Sent",
  seen: "Seen",
  failed: "Not sent.",
  retry: "Retry",
  deleted: "This message was deleted",
  you: "You",
  unread: function (n) { return n === 1 ? "1 unread message" : n + " unread messages"; },
  newFrom: function (name) { return "New message from " + name; },
  reconnecting: "Reconnecting\u2026",
  offline: "You're offline. Messages will be sent when you're back.",
  unavailable: "Chat is unavailable right now.",
  emailAsk: "Get notified by email when we reply",
  emailLabel: "Email address",
  emailSave: "Save",
  emailBad: "Please enter a valid email address.",
  emailFailed: "Could not save your email. Please try again."
};

var ICONS = {
  chat: "M21 12a8 8 0 0 1-11.6 7.1L4 20l1.1-4.4A8 8 0 1 1 21 12z",
  down: "M6 9l6 6 6-6",
  close: "M6 6l12 12M18 6L6 18",
  send: "M4 12h15M13 6l6 6-6 6"
};

// Sizes of the iframe (px): closed shows the launcher only; open on a large viewport shows
// panel + launcher; on a small viewport the panel fills the screen.
var FRAME_CLOSED = 88;
var FRAME_W = 400;
var FRAME_H = 720;
var SMALL_VIEWPORT = "(max-width: 520px), (max-height: 560px)";
var URL_RE = /\bhttps?:\/\/[^\s<>"']+/g;

function UI(win, options) {
  this.win = win;
  this.side = options.side === "left" ? "left" : "right";
  this.on = options.on;            // callbacks into the widget
  this.frame = null;
  this.doc = null;
  this.nodes = {};                 // seq or client id -> message element
  this.state = { open: false, visible: true, full: false };
  this.unread = 0;
  this.lastOwn = null;             // element of the latest own message that shows a status
}

UI.prototype.mount = function (ready) {
  var self = this;
  var hostDoc = this.win.document;
  var frame = hostDoc.createElement("iframe");
  frame.setAttribute("title", TEXT.title);
  frame.setAttribute("data-convot", "");
  // about:srcdoc documents share the host's origin: the widget's requests carry the shop's
  // Origin, which is what the widget-session endpoint's CORS check needs.
  frame.srcdoc = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"></head><body></body></html>";
  this.frame = frame;
  this.small = this.win.matchMedia ? this.win.matchMedia(SMALL_VIEWPORT) : null;
  this.place();
  // Every (re)load of the frame gets a fresh document: built here, filled by the widget.
  frame.addEventListener("load", function () {
    var doc = frame.contentDocument;
    if (!doc || doc === self.doc || doc.URL !== "about:srcdoc") return;
    var first = !self.doc;
    self.doc = doc;
    self.nodes = {};
    self.lastOwn = null;
    self.build();
    self.place();
    if (first) ready();
    else self.on.rebuilt();
  });
  (hostDoc.body || hostDoc.documentElement).appendChild(frame);
  if (this.small && this.small.addEventListener) {
    this.small.addEventListener("change", function () { self.place(); });
  }
  this.guard();
};

// Single-page apps replace the body (Turbo Drive) or wipe it: the frame is put back (it then
// reloads, and the widget fills the new document from its state). A page that keeps removing
// it wins after a few rounds, so the two never loop.
UI.prototype.guard = function () {
  var self = this;
  var hostDoc = this.win.document;
  var Observer = this.win.MutationObserver;
  if (!Observer) return;
  var body = null;
  var returns = 0;
  var observer = new Observer(function () {
    if (hostDoc.body && hostDoc.body !== body) {
      body = hostDoc.body;
      observer.observe(body, { childList: true });
    }
    if (self.frame.isConnected || ++returns > 20) return;
    (hostDoc.body || hostDoc.documentElement).appendChild(self.frame);
  });
  observer.observe(hostDoc.documentElement, { childList: true });
  if (hostDoc.body) {
    body = hostDoc.body;
    observer.observe(body, { childList: true });
  }
};

// Pins every property a hostile stylesheet could use to move, hide or distort the frame.
UI.prototype.place = function () {
  var full = !!(this.state.open && this.small && this.small.matches);
  this.state.full = full;
  var s = this.state;
  var open = s.open;
  var edge = full ? "0" : "4px";
  var w = full ? "100%" : open ? "min(" + FRAME_W + "px, 100%)" : FRAME_CLOSED + "px";
  var h = full ? "100%" : open ? "min(" + FRAME_H + "px, 100%)" : FRAME_CLOSED + "px";
  var style = {
    display: s.visible ? "block" : "none", position: "fixed", "z-index": "2147483000",
    top: full ? "0" : "auto", bottom: edge, left: this.side === "left" ? edge : "auto",
    right: this.side === "right" ? edge : "auto", width: w, height: h,
    "min-width": "0", "min-height": "0", "max-width": "100%", "max-height": "100%",
    margin: "0", padding: "0", border: "0", "border-radius": "0", outline: "0",
    background: "transparent", "box-shadow": "none", opacity: "1", visibility: "visible",
    transform: "none", translate: "none", rotate: "none", scale: "none", filter: "none",
    "backdrop-filter": "none", "clip-path": "none", mask: "none", zoom: "1",
    "mix-blend-mode": "normal", "color-scheme": "normal", "pointer-events": "auto",
    float: "none", transition: "none", animation: "none", "content-visibility": "visible",
    "aspect-ratio": "auto", "box-sizing": "content-box", contain: "none"
  };
  var st = this.frame.style;
  for (var k in style) st.setProperty(k, style[k], "important");
  if (this.root) {
    this.root.className = "cv" + (open ? " open" : "") + (full ? " full" : "");
  }
};

UI.prototype.el = function (tag, attrs, kids) {
  var node = this.doc.createElement(tag);
  if (attrs) {
    for (var k in attrs) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (typeof v === "function") node.addEventListener(k, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
  }
  for (var i = 0; kids && i < kids.length; i++) if (kids[i]) node.appendChild(kids[i]);
  return node;
};

UI.prototype.icon = function (name) {
  var ns = "http://www.w3.org/2000/svg";
  var svg = this.doc.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  var path = this.doc.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.appendChild(path);
  return svg;
};

UI.prototype.build = function () {
  var self = this;
  var on = this.on;
  var doc = this.doc;
  var sheet = CSS_TEXT;
  // A constructed stylesheet is not subject to a host CSP's style-src; fall back to <style>.
  try {
    var Sheet = doc.defaultView.CSSStyleSheet;
    var constructed = new Sheet();
    constructed.replaceSync(sheet);
    doc.adoptedStyleSheets = [constructed];
  } catch (e) {
    doc.head.appendChild(this.el("style", { text: sheet }));
  }
  var n = this.n = {};
  n.title = this.el("h2", { id: "cv-title", text: TEXT.title });
  n.presence = this.el("p", { "class": "presence" });
  n.faces = this.el("div", { "class": "faces", "aria-hidden": "true" });
  n.close = this.el("button", { type: "button", "class": "close", "aria-label": TEXT.close, click: function () { on.close(true); } }, [this.icon("close")]);
  n.banner = this.el("div", { "class": "banner", role: "status", hidden: true });
  n.greet = this.el("div", { "class": "greet", dir: "auto", hidden: true });
  n.log = this.el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-labelledby": "cv-log-label", tabindex: "0" }, [
    this.el("span", { "class": "sr", id: "cv-log-label", text: TEXT.messages }), n.greet
  ]);
  n.log.addEventListener("scroll", function () { on.scrolled(n.log.scrollTop < 40); }, { passive: true });
  n.typing = this.el("div", { "class": "typing", "aria-live": "polite" });
  n.emailInput = this.el("input", { id: "cv-email", type: "email", name: "email", autocomplete: "email", required: true, "aria-describedby": "cv-email-err", placeholder: TEXT.emailLabel });
  n.emailErr = this.el("p", { "class": "err", id: "cv-email-err", role: "alert" });
  n.email = this.el("form", { "class": "email", hidden: true, novalidate: true, submit: function (ev) {
    ev.preventDefault();
    var value = n.emailInput.value.trim();
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value) || value.length > 254) {
      self.setEmailError(TEXT.emailBad);
      return;
    }
    self.setEmailError("");
    on.email(value);
  } }, [
    this.el("label", { "for": "cv-email", text: TEXT.emailAsk }),
    this.el("div", null, [n.emailInput, this.el("button", { type: "submit", text: TEXT.emailSave })]),
    n.emailErr
  ]);
  n.input = this.el("textarea", { id: "cv-input", rows: "1", maxlength: "8000", placeholder: TEXT.placeholder, "aria-label": TEXT.input, autocomplete: "off" });
  n.send = this.el("button", { type: "submit", "class": "send", "aria-label": TEXT.send, disabled: true }, [this.icon("send")]);
  n.input.addEventListener("input", function () {
    self.autosize();
    n.send.disabled = !n.input.value.trim();
    on.typing(!!n.input.value);
  });
  n.input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      self.submit();
    }
  });
  n.compose = this.el("form", { "class": "compose", submit: function (ev) { ev.preventDefault(); self.submit(); } }, [n.input, n.send]);
  n.panel = this.el("section", { "class": "panel", id: "cv-panel", role: "dialog", "aria-labelledby": "cv-title", hidden: true }, [
    this.el("header", { "class": "head" }, [n.faces, this.el("div", { "class": "titles" }, [n.title, n.presence]), n.close]),
    n.banner, n.log, n.typing, n.email, n.compose
  ]);
  n.badge = this.el("span", { "class": "badge", "aria-hidden": "true", hidden: true });
  n.launcherIcon = this.icon("chat");
  n.launcher = this.el("button", { type: "button", "class": "launcher", "aria-label": TEXT.open, "aria-expanded": "false", "aria-controls": "cv-panel", click: function () { on.toggle(true); } }, [n.launcherIcon, n.badge]);
  // Announcements for a closed panel (new message while the shopper is elsewhere).
  n.announce = this.el("div", { "class": "sr", role: "status" });
  this.root = this.el("div", { "class": "cv" }, [n.panel, n.launcher, n.announce]);
  doc.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && self.state.open) {
      ev.preventDefault();
      on.close(true);
    }
  });
  doc.body.appendChild(this.root);
};

UI.prototype.submit = function () {
  var text = this.n.input.value;
  if (!text.trim()) return;
  this.n.input.value = "";
  this.n.send.disabled = true;
  this.autosize();
  this.on.send(text);
};

UI.prototype.autosize = function () {
  var t = this.n.input;
  t.style.height = "auto";
  t.style.height = Math.min(t.scrollHeight + 2, 120) + "px";
};

UI.prototype.setApp = function (app) {
  var colour = safeColour(app.colour);
  this.root.style.setProperty("--c", colour);
  this.root.style.setProperty("--t", textOn(colour));
  this.n.title.textContent = app.name || TEXT.title;
  this.n.greet.textContent = app.greeting || "";
  this.n.greet.hidden = !app.greeting;
};

UI.prototype.setView = function (open, visible, focus) {
  var was = this.state.open;
  this.state.open = open;
  this.state.visible = visible;
  this.place();
  var n = this.n;
  n.panel.hidden = !open;
  n.launcher.setAttribute("aria-expanded", open ? "true" : "false");
  n.launcher.replaceChild(this.icon(open ? "down" : "chat"), n.launcherIcon);
  n.launcherIcon = n.launcher.firstChild;
  this.labelLauncher();
  if (open && !was) {
    this.scrollDown(true);
    if (focus) {
      this.frame.focus();
      n.input.focus();
    }
  } else if (!open && was && focus && visible) {
    this.frame.focus();
    n.launcher.focus();
  }
};

UI.prototype.labelLauncher = function () {
  var label = this.state.open ? TEXT.minimise : TEXT.open;
  if (this.unread && !this.state.open) label += ", " + TEXT.unread(this.unread);
  this.n.launcher.setAttribute("aria-label", label);
};

UI.prototype.setUnread = function (count) {
  this.unread = count;
  this.n.badge.hidden = !count;
  this.n.badge.textContent = count > 9 ? "9+" : String(count);
  this.labelLauncher();
};

UI.prototype.announce = function (text) {
  this.n.announce.textContent = text;
};

UI.prototype.avatar = function (name, url) {
  var av = this.el("span", { "class": "av", "aria-hidden": "true", text: initials(name) });
  var src = safeUrl(url);
  if (src) {
    var img = this.el("img", { alt: "", referrerpolicy: "no-referrer", loading: "lazy" });
    img.addEventListener("error", function () { if (img.parentNode) img.parentNode.removeChild(img); });
    img.src = src;
    av.appendChild(img);
  }
  return av;
};

UI.prototype.setMaxLength = function (n) {
  this.n.input.setAttribute("maxlength", String(n));
};

UI.prototype.setTeam = function (online, agents) {
  var n = this.n;
  n.presence.textContent = online ? TEXT.online : TEXT.away;
  n.presence.className = "presence" + (online ? " on" : "");
  while (n.faces.firstChild) n.faces.removeChild(n.faces.firstChild);
  for (var i = 0; i < agents.length && i < 2; i++) n.faces.appendChild(this.avatar(agents[i].name, agents[i].avatar_url));
};

UI.prototype.setBanner = function (text, bad) {
  var b = this.n.banner;
  b.hidden = !text;
  b.textContent = text || "";
  b.className = "banner" + (bad ? " bad" : "");
};

UI.prototype.setTyping = function (name) {
  var t = this.n.typing;
  while (t.firstChild) t.removeChild(t.firstChild);
  if (!name) return;
  t.appendChild(this.el("span", { "class": "dots", "aria-hidden": "true" }, [this.el("i"), this.el("i"), this.el("i")]));
  t.appendChild(this.el("span", { text: name + TEXT.typing }));
};

UI.prototype.setEmailPrompt = function (show) {
  this.n.email.hidden = !show;
};

UI.prototype.setEmailError = function (text) {
  this.n.emailErr.textContent = text;
  this.n.emailInput.setAttribute("aria-invalid", text ? "true" : "false");
};

UI.prototype.nearBottom = function () {
  var l = this.n.log;
  return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
};

// Prepending older messages keeps what the shopper looks at in place; at the bottom it
// stays at the bottom.
UI.prototype.keepScroll = function () {
  var l = this.n.log;
  var stick = this.nearBottom();
  var fromBottom = l.scrollHeight - l.scrollTop;
  return function () {
    l.scrollTop = stick ? l.scrollHeight : l.scrollHeight - fromBottom;
  };
};

UI.prototype.scrollDown = function (force) {
  var l = this.n.log;
  if (force || this.stick) l.scrollTop = l.scrollHeight;
};

// Message text becomes text nodes; only http(s) URLs become links, built as elements.
UI.prototype.fillBody = function (node, body) {
  while (node.firstChild) node.removeChild(node.firstChild);
  var text = String(body);
  var at = 0;
  var m;
  URL_RE.lastIndex = 0;
  while ((m = URL_RE.exec(text))) {
    var url = m[0].replace(/[.,;:!?)\]]+$/, "");
    var href = safeUrl(url);
    if (!href) continue;
    if (m.index > at) node.appendChild(this.doc.createTextNode(text.slice(at, m.index)));
    node.appendChild(this.el("a", { href: href, target: "_blank", rel: "noopener noreferrer nofollow", text: url }));
    at = m.index + url.length;
    URL_RE.lastIndex = at;
  }
  if (at < text.length) node.appendChild(this.doc.createTextNode(text.slice(at)));
};

function formatTime(ms) {
  var d = new Date(ms);
  if (isNaN(d)) return "";
  var opts = { hour: "numeric", minute: "2-digit" };
  if (new Date().toDateString() !== d.toDateString()) {
    opts.month = "short";
    opts.day = "numeric";
  }
  try {
    return d.toLocaleString(undefined, opts);
  } catch (e) {
    return d.toISOString().slice(11, 16);
  }
}

// Inserts or updates one message. `m` is a view model from Thread.view(): key, seq (or
// Infinity while pending), mine, kind, author, avatar, body, at, deleted, status.
// `live`: it just arrived (announced to screen readers when the panel is closed).
UI.prototype.upsert = function (m, live) {
  this.stick = this.nearBottom();
  var node = this.nodes[m.key];
  var fresh = !node;
  if (fresh) {
    if (m.kind === "activity") {
      node = this.el("div", { "class": "activity", dir: "auto" });
      node.bubble = node;
    } else {
      node = this.el("div", { "class": "msg " + (m.mine ? "me" : "them") });
      node.who = this.el("div", { "class": "who", "aria-hidden": "true" }, [this.avatar(m.author, m.avatar), this.el("span", { text: m.author })]);
      node.label = this.el("span", { "class": "sr", text: (m.mine ? TEXT.you : m.author) + ": " });
      node.bubble = this.el("div", { "class": "bubble", dir: "auto" });
      node.meta = this.el("div", { "class": "meta" });
      node.appendChild(node.who);
      node.appendChild(this.el("div", null, [node.label, node.bubble]));
      node.appendChild(node.meta);
    }
    node.seq = m.seq;
    node.m = m;
    this.nodes[m.key] = node;
    this.place_(node);
  } else if (node.seq !== m.seq) {
    node.seq = m.seq;
    node.m = m;
    this.place_(node);
  }
  node.m = m;
  if (node.body !== m.body || node.deleted !== m.deleted) {
    node.body = m.body;
    node.deleted = m.deleted;
    if (m.deleted) node.bubble.textContent = TEXT.deleted;
    else this.fillBody(node.bubble, m.body);
    if (m.deleted) node.classList.add("deleted");
  }
  if (node.meta) {
    node.title = m.at ? new Date(m.at).toLocaleString() : "";
    node.classList.toggle("failed", m.status === "failed");
    this.meta(node);
  }
  if (m.mine && m.status !== "failed" && m.status !== "sending" && (!this.lastOwn || this.lastOwn.seq <= m.seq)) {
    var previous = this.lastOwn;
    this.lastOwn = node;
    if (previous && previous !== node) this.meta(previous);
    this.meta(node);
  }
  if (fresh && live && !m.mine && !this.state.open && m.kind !== "activity") this.announce(TEXT.newFrom(m.author));
  this.scrollDown(fresh && m.mine);
  return node;
};

UI.prototype.meta = function (node) {
  var m = node.m;
  var meta = node.meta;
  if (!meta) return;
  while (meta.firstChild) meta.removeChild(meta.firstChild);
  var self = this;
  if (m.mine && m.status === "failed") {
    meta.appendChild(this.doc.createTextNode(TEXT.failed + (m.error ? " " + m.error : "") + " "));
    meta.appendChild(this.el("button", { type: "button", "class": "retry", text: TEXT.retry, click: function () { self.on.retry(m.key); } }));
    return;
  }
  if (m.mine && m.status === "sending") {
    meta.textContent = TEXT.sending;
    return;
  }
  var parts = [];
  if (m.mine && node === this.lastOwn) parts.push(m.status === "seen" ? TEXT.seen : TEXT.sent);
  var next = node.nextSibling;
  var endOfRun = !next || !next.m || next.m.mine !== m.mine || next.m.author !== m.author;
  if (m.at && (endOfRun || node === this.lastOwn)) parts.push(formatTime(m.at));
  meta.textContent = parts.join(" \u00b7 ");
};

// Keeps messages in seq order (pending ones, seq Infinity, stay last) and groups runs by author.
UI.prototype.place_ = function (node) {
  var log = this.n.log;
  if (node.parentNode) log.removeChild(node);
  var before = null;
  for (var c = log.lastChild; c && c.seq !== undefined; c = c.previousSibling) {
    if (c.seq > node.seq) before = c;
    else break;
  }
  log.insertBefore(node, before);
  this.group(node);
  if (node.nextSibling) this.group(node.nextSibling);
  if (node.previousSibling && node.previousSibling.meta) this.meta(node.previousSibling);
};

UI.prototype.group = function (node) {
  if (!node.who) return;
  var prev = node.previousSibling;
  var m = node.m;
  var pm = prev && prev.m;
  var cont = !!(pm && pm.kind !== "activity" && pm.mine === m.mine && pm.author === m.author);
  node.classList.toggle("cont", cont);
  node.who.hidden = cont || m.mine;
};

UI.prototype.remove = function (key) {
  var node = this.nodes[key];
  if (!node) return;
  delete this.nodes[key];
  if (this.lastOwn === node) this.lastOwn = null;
  var next = node.nextSibling;
  node.parentNode.removeChild(node);
  if (next) this.group(next);
};

UI.prototype.clear = function () {
  for (var k in this.nodes) this.remove(k);
  this.lastOwn = null;
};

UI.prototype.isReading = function () {
  return this.state.open && this.state.visible && this.win.document.visibilityState !== "hidden";
};
