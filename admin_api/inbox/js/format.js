// Pure formatting helpers: names, initials, times, tags, links and @mentions. No DOM, no I/O,
// so tests drive them directly.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// "Ana Lima" -> "AL"; "ana@example.com" -> "A"; "" -> "?"
export function initials(name) {
  const words = String(name || "").replace(/@.*$/, "").split(/[\s._-]+/).filter(Boolean);
  if (!words.length) return "?";
  const first = Array.from(words[0])[0] || "";
  const last = words.length > 1 ? Array.from(words[words.length - 1])[0] || "" : "";
  return (first + last).toUpperCase();
}

// What to call a contact: name, else email, else external id, else "Visitor <short id>".
export function contactName(contact, id) {
  if (contact) {
    for (const key of ["name", "email", "external_id"]) {
      const value = contact[key];
      if (typeof value === "string" && value.trim()) return value.trim();
    }
  }
  const ref = (contact && contact.id) || id || "";
  return ref ? "Visitor " + String(ref).slice(0, 6) : "Visitor";
}

export function memberName(member) {
  if (!member) return "Someone";
  return (member.name && member.name.trim()) || member.email || "Someone";
}

// A stable hue (0-359) for an id, so an avatar keeps its colour everywhere.
export function hueOf(id) {
  let h = 0;
  const s = String(id || "");
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h % 360;
}

// Milliseconds since the epoch from a number (ms) or an ISO string; null when unknown.
export function toMillis(value) {
  if (typeof value === "number" && isFinite(value)) return value;
  if (typeof value === "string" && value) {
    const t = Date.parse(value);
    return isNaN(t) ? null : t;
  }
  return null;
}

// Short relative time for lists: "now", "5m", "3h", "2d", then a date.
export function shortAgo(at, now) {
  const t = toMillis(at);
  if (t === null) return "";
  const d = Math.max(0, (now === undefined ? Date.now() : now) - t);
  if (d < MINUTE) return "now";
  if (d < HOUR) return Math.floor(d / MINUTE) + "m";
  if (d < DAY) return Math.floor(d / HOUR) + "h";
  if (d < 7 * DAY) return Math.floor(d / DAY) + "d";
  return new Date(t).toLocaleDateString(undefined, { day: "numeric", month: "short" });
}

export function clockTime(at) {
  const t = toMillis(at);
  return t === null ? "" : new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

export function fullTime(at) {
  const t = toMillis(at);
  return t === null ? "" : new Date(t).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// Same rule as the server (engine/events.py normalise_tag): "VIP Customer" -> "vip-customer".
export function normaliseTag(raw) {
  if (typeof raw !== "string") return null;
  const tag = raw.trim().toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  return tag && tag.length <= 64 ? tag : null;
}

// Splits text into plain and link segments; only http(s) URLs become links. The caller builds
// text nodes and <a> elements from the segments: no HTML is ever parsed.
const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;

export function linkSegments(text) {
  const out = [];
  const s = String(text == null ? "" : text);
  let last = 0;
  let m;
  URL_RE.lastIndex = 0;
  while ((m = URL_RE.exec(s)) !== null) {
    let url = m[0];
    // Trailing punctuation belongs to the sentence, not the URL.
    const trail = /[.,;:!?)\]]+$/.exec(url);
    if (trail) url = url.slice(0, -trail[0].length);
    if (m.index > last) out.push({ text: s.slice(last, m.index) });
    out.push({ text: url, href: url });
    last = m.index + url.length;
    URL_RE.lastIndex = last;
  }
  if (last < s.length) out.push({ text: s.slice(last) });
  return out;
}

// The @mention being typed at the caret: {start, query} or null. "@" must start a word.
export function mentionAt(text, caret) {
  const before = String(text).slice(0, caret);
  const m = /(^|\s)@([^\s@]{0,40})$/.exec(before);
  if (!m) return null;
  return { start: before.length - m[2].length - 1, query: m[2] };
}

// Members whose name or email starts a word with `query` (case-insensitive), best first.
export function mentionCandidates(members, query, limit) {
  const q = String(query || "").toLowerCase();
  const scored = [];
  for (const member of members) {
    const name = memberName(member).toLowerCase();
    const email = String(member.email || "").toLowerCase();
    let score = -1;
    if (!q) score = 1;
    else if (name.startsWith(q)) score = 3;
    else if (name.split(/\s+/).some((w) => w.startsWith(q))) score = 2;
    else if (email.startsWith(q)) score = 1;
    if (score >= 0) scored.push({ member, score, name });
  }
  scored.sort((a, b) => b.score - a.score || a.name.localeCompare(b.name));
  return scored.slice(0, limit || 6).map((s) => s.member);
}

// The members still mentioned in `text` ("@Name" present) among those picked while typing.
export function mentionedIds(text, picked) {
  const s = String(text);
  const ids = [];
  for (const [id, label] of picked) {
    if (s.includes("@" + label) && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

// Splits a message body into plain text and "@Name" mention segments for highlighting.
export function mentionSegments(text, labels) {
  const s = String(text == null ? "" : text);
  const names = labels.filter(Boolean).sort((a, b) => b.length - a.length);
  if (!names.length) return [{ text: s }];
  const out = [];
  let i = 0;
  let plain = "";
  while (i < s.length) {
    let hit = null;
    if (s[i] === "@" && (i === 0 || /\s/.test(s[i - 1]))) {
      hit = names.find((n) => s.startsWith(n, i + 1));
    }
    if (hit) {
      if (plain) out.push({ text: plain });
      plain = "";
      out.push({ text: "@" + hit, mention: hit });
      i += hit.length + 1;
    } else {
      plain += s[i];
      i += 1;
    }
  }
  if (plain) out.push({ text: plain });
  return out;
}

export function plural(n, one, many) {
  return n + " " + (n === 1 ? one : many || one + "s");
}

export const STATUS_LABELS = { open: "Open", pending: "Pending", resolved: "Resolved" };
export const ROLE_LABELS = { owner: "Owner", admin: "Admin", agent: "Agent" };
export const AVAILABILITY_LABELS = { online: "Online", busy: "Busy", offline: "Offline" };
