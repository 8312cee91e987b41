// Small pure helpers shared by the widget's parts (no DOM of the host page, no network).

var HEX_COLOUR = /^#(?:[0-9a-fA-F]{3}){1,2}$/;
var DEFAULT_COLOUR = "#1f5eff";

// The app's colour goes into CSS: anything but a plain hex colour is refused, so a setting
// can never inject CSS.
function safeColour(value) {
  if (typeof value !== "string" || !HEX_COLOUR.test(value)) return DEFAULT_COLOUR;
  if (value.length === 4) value = "#" + value[1] + value[1] + value[2] + value[2] + value[3] + value[3];
  return value.toLowerCase();
}

// Black or white text on a background, whichever has the higher WCAG contrast ratio.
function textOn(hex) {
  var n = parseInt(hex.slice(1), 16);
  var channel = function (c) {
    c /= 255;
    return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  };
  var lum = 0.2126 * channel(n >> 16) + 0.7152 * channel((n >> 8) & 255) + 0.0722 * channel(n & 255);
  return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#111111" : "#ffffff";
}

// Only http(s) URLs are ever put into src/href attributes.
function safeUrl(value) {
  if (typeof value !== "string" || value.length > 2048) return null;
  try {
    var u = new URL(value);
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
  } catch (e) {
    return null;
  }
}

// Random identifiers for client message ids: 128 bits from the platform's CSPRNG.
function randomId() {
  var c = typeof crypto !== "undefined" ? crypto : null;
  if (c && c.randomUUID) return c.randomUUID();
  var b = new Uint8Array(16);
  c.getRandomValues(b);
  var s = "";
  for (var i = 0; i < 16; i++) s += (b[i] + 256).toString(16).slice(1);
  return s;
}

// Size of a frame on the wire (UTF-8).
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

// localStorage that never throws (storage can be disabled, full, or partitioned away);
// falls back to memory so the widget still works for the life of the page.
function Store(prefix) {
  this.prefix = prefix;
  this.mem = {};
}
Store.prototype.get = function (key) {
  try {
    var raw = window.localStorage.getItem(this.prefix + key);
    if (raw !== null) return JSON.parse(raw);
  } catch (e) {
    // fall through to memory
  }
  return Object.prototype.hasOwnProperty.call(this.mem, key) ? this.mem[key] : null;
};
// Everything this widget stored (this app's keys only).
Store.prototype.clear = function () {
  this.mem = {};
  try {
    var ls = window.localStorage;
    for (var i = ls.length - 1; i >= 0; i--) {
      var k = ls.key(i);
      if (k && k.indexOf(this.prefix) === 0) ls.removeItem(k);
    }
  } catch (e) {
    // storage unavailable: memory is cleared
  }
};

Store.prototype.set = function (key, value) {
  this.mem[key] = value;
  try {
    if (value === null) window.localStorage.removeItem(this.prefix + key);
    else window.localStorage.setItem(this.prefix + key, JSON.stringify(value));
  } catch (e) {
    // memory copy is kept
  }
};
