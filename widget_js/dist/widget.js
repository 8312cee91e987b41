/*! Convot widget 51a54ad5001f */
(function(window,document){"use strict";
var CSS_TEXT="*{box-sizing:border-box;margin:0;padding:0}html,body{height:100%;background:transparent;color-scheme:normal;overflow:hidden}body{font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\",Arial,\"Noto Sans\",sans-serif;color:#1b1c1f;-webkit-font-smoothing:antialiased;-webkit-text-size-adjust:100%}button,textarea,input{font:inherit;color:inherit}button{cursor:pointer;background:none;border:0}svg{display:block;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}[hidden]{display:none!important}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}:focus{outline:none}:focus-visible{outline:2px solid #1b1c1f;outline-offset:2px;box-shadow:0 0 0 4px #fff}.launcher{position:absolute;right:16px;bottom:16px;width:56px;height:56px;border-radius:50%;background:var(--c);color:var(--t);box-shadow:0 2px 8px rgba(0,0,0,.22);display:flex;align-items:center;justify-content:center;border:1px solid transparent;transition:transform .15s}.launcher:hover{transform:scale(1.05)}.launcher svg{width:26px;height:26px}.launcher:focus-visible{outline:3px solid #1b1c1f;outline-offset:2px;box-shadow:0 0 0 2px #fff,0 2px 8px rgba(0,0,0,.22)}.badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#d92d20;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center;box-shadow:0 0 0 2px #fff}.panel{position:absolute;left:16px;right:16px;top:16px;bottom:84px;display:flex;flex-direction:column;background:#fff;border-radius:16px;box-shadow:0 1px 4px rgba(0,0,0,.1),0 10px 24px -8px rgba(0,0,0,.3);overflow:hidden;border:1px solid transparent;animation:cv-in .18s ease-out}@keyframes cv-in{from{opacity:0;transform:translateY(8px)}}.full .panel{inset:0;border-radius:0;box-shadow:none}.full.open .launcher{display:none}.head{display:flex;align-items:center;gap:10px;padding:14px 12px 14px 16px;background:var(--c);color:var(--t);flex:none}.head h2{font-size:16px;font-weight:650;line-height:1.25;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.titles{flex:1;min-width:0}.presence{font-size:12.5px;opacity:.92;display:flex;align-items:center;gap:6px}.presence:before{content:\"\";width:8px;height:8px;border-radius:50%;background:#98a2b3;box-shadow:0 0 0 1.5px var(--t)}.presence.on:before{background:#12b76a}.faces{display:flex;flex:none}.faces .av{width:32px;height:32px;font-size:12px;box-shadow:0 0 0 2px var(--c)}.faces .av+.av{margin-left:-3px}.close{width:36px;height:36px;border-radius:8px;display:flex;align-items:center;justify-content:center;flex:none;color:var(--t)}.close:hover{background:rgba(127,127,127,.2)}.close svg{width:20px;height:20px}.banner{flex:none;padding:6px 12px;font-size:12.5px;text-align:center;background:#fef0c7;color:#7a2e0e}.banner.bad{background:#fee4e2;color:#912018}.log{flex:1;overflow-y:auto;padding:16px 14px 8px;display:flex;flex-direction:column;gap:2px;overscroll-behavior:contain}.greet{align-self:flex-start;max-width:85%;padding:10px 12px;margin-bottom:10px;background:#f2f4f7;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;border:1px solid transparent}.day{align-self:center;margin:10px 0 6px;font-size:12px;color:#667085}.msg{display:flex;flex-direction:column;max-width:85%;margin-top:6px}.msg.cont{margin-top:0}.them{align-self:flex-start;align-items:flex-start}.me{align-self:flex-end;align-items:flex-end}.who{display:flex;align-items:center;gap:6px;font-size:12px;color:#475467;margin:0 0 3px 2px}.who .av{width:20px;height:20px;font-size:10px}.bubble{padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;border:1px solid transparent}.them .bubble{background:#f2f4f7;border-bottom-left-radius:4px}.me .bubble{background:var(--c);color:var(--t);border-bottom-right-radius:4px}.activity{align-self:center;max-width:90%;font-size:12.5px;color:#667085;text-align:center;margin:8px 0}.deleted .bubble{font-style:italic;opacity:.7}.meta{font-size:11.5px;color:#667085;margin:2px 4px 0;min-height:0}.meta:empty{display:none}.failed .meta{color:#b42318}.retry{color:#b42318;text-decoration:underline;font-size:inherit;padding:0 2px}.bubble a{color:inherit;text-decoration:underline}.av{display:inline-flex;align-items:center;justify-content:center;border-radius:50%;background:#d0d5dd;color:#344054;font-weight:600;overflow:hidden;flex:none}.av img{width:100%;height:100%;object-fit:cover}.typing{flex:none;min-height:22px;padding:0 16px 2px;font-size:12.5px;color:#475467;display:flex;align-items:center;gap:6px}.dots{display:inline-flex;gap:3px}.dots i{width:5px;height:5px;border-radius:50%;background:#98a2b3;animation:cv-dot 1.2s infinite}.dots i:nth-child(2){animation-delay:.2s}.dots i:nth-child(3){animation-delay:.4s}@keyframes cv-dot{0%,60%,100%{opacity:.3}30%{opacity:1}}.email{flex:none;margin:0 12px 8px;padding:10px 12px;border:1px solid #eaecf0;border-radius:12px;background:#f9fafb}.email label{display:block;font-size:12.5px;color:#344054;margin-bottom:6px}.email div{display:flex;gap:6px}.email input{flex:1;min-width:0;height:36px;padding:0 10px;border:1px solid #d0d5dd;border-radius:8px;background:#fff}.email button{height:36px;padding:0 12px;border-radius:8px;background:var(--c);color:var(--t);font-weight:600;border:1px solid transparent}.email .err{color:#b42318;font-size:12px;margin-top:4px}.compose{flex:none;display:flex;align-items:flex-end;gap:8px;padding:10px 12px 12px;border-top:1px solid #eaecf0}.compose textarea{flex:1;min-width:0;resize:none;border:1px solid #d0d5dd;border-radius:10px;padding:8px 10px;max-height:120px;line-height:1.4;background:#fff}.compose textarea:focus-visible,.email input:focus-visible{outline:none;border-color:#475467;box-shadow:0 0 0 1px #475467}.send{width:38px;height:38px;border-radius:10px;background:var(--c);color:var(--t);display:flex;align-items:center;justify-content:center;flex:none;border:1px solid transparent}.send:disabled{opacity:.45;cursor:default}.send svg{width:18px;height:18px}@media (max-width:520px){.compose textarea,.email input{font-size:16px}}@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}@media (forced-colors:active){.launcher,.send,.email button{border-color:ButtonText}.badge{border:1px solid}}";
var HEX_COLOUR = /^#(?:[0-9a-fA-F]{3}){1,2}$/;
var DEFAULT_COLOUR = "#1f5eff";
function safeColour(value) {
if (typeof value !== "string" || !HEX_COLOUR.test(value)) return DEFAULT_COLOUR;
if (value.length === 4) value = "#" + value[1] + value[1] + value[2] + value[2] + value[3] + value[3];
return value.toLowerCase();
}
function textOn(hex) {
var n = parseInt(hex.slice(1), 16);
var channel = function (c) {
c /= 255;
return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
};
var lum = 0.2126 * channel(n >> 16) + 0.7152 * channel((n >> 8) & 255) + 0.0722 * channel(n & 255);
return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#111111" : "#ffffff";
}
function safeUrl(value) {
if (typeof value !== "string" || value.length > 2048) return null;
try {
var u = new URL(value);
return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
} catch (e) {
return null;
}
}
function randomId() {
var c = typeof crypto !== "undefined" ? crypto : null;
if (c && c.randomUUID) return c.randomUUID();
var b = new Uint8Array(16);
c.getRandomValues(b);
var s = "";
for (var i = 0; i < 16; i++) s += (b[i] + 256).toString(16).slice(1);
return s;
}
function frameBytes(frame) {
var text = JSON.stringify(frame);
return typeof TextEncoder !== "undefined" ? new TextEncoder().encode(text).length : text.length * 3;
}
function initials(name) {
var parts = String(name || "").trim().split(/\s+/).filter(Boolean);
if (!parts.length) return "?";
var s = parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : "");
return s.toUpperCase();
}
function Store(prefix) {
this.prefix = prefix;
this.mem = {};
}
Store.prototype.get = function (key) {
try {
var raw = window.localStorage.getItem(this.prefix + key);
if (raw !== null) return JSON.parse(raw);
} catch (e) {
}
return Object.prototype.hasOwnProperty.call(this.mem, key) ? this.mem[key] : null;
};
Store.prototype.clear = function () {
this.mem = {};
try {
var ls = window.localStorage;
for (var i = ls.length - 1; i >= 0; i--) {
var k = ls.key(i);
if (k && k.indexOf(this.prefix) === 0) ls.removeItem(k);
}
} catch (e) {
}
};
Store.prototype.set = function (key, value) {
this.mem[key] = value;
try {
if (value === null) window.localStorage.removeItem(this.prefix + key);
else window.localStorage.setItem(this.prefix + key, JSON.stringify(value));
} catch (e) {
}
};
var BACKOFF_BASE_MS = 800;
var BACKOFF_CAP_MS = 30000;
function backoffDelay(attempt, random) {
var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, Math.min(attempt, 16)));
return Math.round(ceiling / 2 + (random ? random() : Math.random()) * ceiling / 2);
}
var IDENTIFY_FIELDS = ["email", "external_id", "name", "company", "phone", "avatar_url", "custom_data", "user_hash", "shop", "shop_hash"];
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
function refreshDelay(lifetime) {
var life = Math.max(lifetime, 5);
return Math.max(life * 0.5, Math.min(life * 0.8, life - 20)) * 1000;
}
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
Thread.prototype.add = function (m, received) {
if (!(m.seq > 0)) return "dup";
if (received && m.seq > this.lastSeq) this.lastSeq = m.seq;
var old = this.items[m.seq];
if (old) {
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
Thread.prototype.view = function (m) {
if (!m.seq) {
return { key: m.cid, seq: Infinity, mine: true, kind: "incoming", author: "", avatar: null,
body: m.body, at: m.at, deleted: false, status: m.status === "failed" ? "failed" : "sending", error: m.error };
}
return { key: m.cid || "s" + m.seq, seq: m.seq, mine: m.mine, kind: m.type, author: m.author, avatar: m.avatar,
body: m.body, at: m.at, deleted: !!m.deleted,
status: m.mine ? (this.seenSeq >= m.seq ? "seen" : "sent") : null, error: null };
};
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
frame.srcdoc = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"></head><body></body></html>";
this.frame = frame;
this.small = this.win.matchMedia ? this.win.matchMedia(SMALL_VIEWPORT) : null;
this.place();
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
Widget.prototype.setView = function (open, visible, user) {
this.view.open = !!(open && visible);
this.view.visible = !!visible;
if (!this.ui.doc) return;
this.ui.setView(this.view.open, this.view.visible, user);
this.markRead();
};
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
if (this.sentIdentity !== this.identity) {
var self = this;
this.timer("identify", 0, function () { self.refreshSession(true).catch(function () {}); });
}
};
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
if (this.session) this.refreshSession(true).catch(function () {});
else if (this.state === STATE.STOPPED) {
this.state = STATE.IDLE;
this.startSession();
}
};
Widget.prototype.refreshSession = function (explicit) {
var self = this;
var gen = this.generation;
return this.requestSession().then(function (data) {
if (gen !== self.generation) return data;
self.sessionAttempt = 0;
var sameContact = data.contact && data.contact.id === self.contactId;
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
Widget.prototype.typing = function (active) {
var now = Date.now();
if (!this.thread.id) return;
if (active && now - this.typingSentAt < TYPING_EVERY_MS) return;
if (!active && !this.typingSentAt) return;
if (this.sendFrame({ type: "typing", conversation_id: this.thread.id, active: active })) this.typingSentAt = active ? now : 0;
};
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
function closeAction(code) {
if (code >= 4400 && code <= 4499) return { then: "reauth", terminal: true, wait: 0 };
if (code === 4003 || code === 4007) return { then: "reauth", terminal: false, wait: 0 };
return { then: "reconnect", terminal: false, wait: code === 4006 ? 5000 : 0 };
}
var SEND_RETRY = { rate_limited: 2000, unavailable: 0, internal: 0 };
var SEND_FAILED = {
message_too_long: "Message is too long.",
bad_frame: "",
forbidden: ""
};
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
if (f.conversation_id !== this.thread.id) this.adopt(f.conversation_id, f.seq === 1);
var t = this.thread;
t.dropOutbox(item.cid);
this.saveOutbox();
this.addMessage({ conversation_id: t.id, seq: f.seq, id: f.id, client_msg_id: item.cid, type: "incoming",
author_kind: "contact", author_id: this.contactId, body: item.body, created_at: f.created_at }, false, false);
this.armAckTimer();
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
this.adopt(null);
return;
}
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
this.drop();
return;
}
if (f.ref === "resume") this.resuming = false;
if (f.ref === "history") this.historyPending = false;
if (f.code === "rate_limited" && !f.ref) {
var self = this;
this.timer("resend", 2000, function () {
self.thread.requeue();
self.flush();
});
return;
}
this.warn("gateway error " + f.code);
};
var host = window.Convot;
if (host && typeof host === "object" && host.__convot === "loader") {
host.__convot = "widget";
var queue = host.q || [];
host.q = [];
var widget = new Widget(window, host);
for (var name in widget.api_) host[name] = widget.api_[name];
host.push = function (cmd) { widget.command(cmd); };
widget.drain(queue);
}
})(window,document);
