// The gateway protocol as the inbox speaks it (docs/protocol.md), as pure decisions: what a
// close code means, how long to wait before reconnecting, when to refresh the token.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15000;

// "Equal jitter": half of the exponential delay fixed, half random, so a gateway restart spreads
// reconnects over time while no client retries in a tight loop.
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

// Close codes (gateway/errors.py):
//   4000-4099 reconnect (and resume); 4003 token_expired, 4007 reauthenticate need a new token
//   4400-4499 terminal: 4402 token_revoked / 4403 access_revoked mean the member was signed out
//             or removed; 4401 auth_failed is retried once with a fresh token when it only
//             expired (a laptop slept through the refresh) or the role changed meanwhile
//   1000-1015: 1001/1006/1011/1012/1013 are transient; 1002/1003/1007/1008/1009 are bugs
export function closeAction(code, reason) {
  if (code >= 4400 && code <= 4499) {
    if (code === 4402 || code === 4403) return { then: "signed_out" };
    if (code === 4401 && /^auth_failed:(expired|not_yet_valid|stale_token)$/.test(reason || "")) {
      return { then: "new_token" };
    }
    return { then: "stop" };
  }
  if (code === 4003 || code === 4007) return { then: "new_token" };
  if (code === 4006) return { then: "reconnect", wait: 5000 };
  if (code >= 4000 && code <= 4099) return { then: "reconnect", wait: 0 };
  if ([1002, 1003, 1007, 1008, 1009].includes(code)) return { then: "stop" };
  return { then: "reconnect", wait: 0 };
}

// Lifetime of a JWT in seconds (exp - iat), read without verifying: it only schedules the
// refresh and, unlike an absolute time, does not depend on this browser's clock.
export function tokenLifetime(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    const life = claims.exp - claims.iat;
    return life > 0 ? life : null;
  } catch (e) {
    return null;
  }
}

// Refresh at 80% of the lifetime, at least 30 s before expiry, never before half of it.
export function refreshDelay(lifetimeSeconds) {
  const life = Math.max(lifetimeSeconds || 0, 10);
  return Math.max(life * 0.5, Math.min(life * 0.8, life - 30)) * 1000;
}

// Error codes of the gateway that answer one send (error frame with ref = client_msg_id).
export const SEND_RETRY_LATER = new Set(["rate_limited", "unavailable", "internal"]);
export const SEND_FAILED_TEXT = {
  message_too_long: "Too long to send.",
  not_found: "This conversation no longer exists.",
  forbidden: "You may not write here.",
  bad_frame: "Could not be sent.",
};

// Frames the inbox sends.
export const frames = {
  authenticate: (token) => ({ type: "authenticate", token, ref: "auth" }),
  send: (conversationId, cid, body, kind, meta) => {
    const f = { type: "send", conversation_id: conversationId, client_msg_id: cid, body, kind, ref: cid };
    if (meta && Object.keys(meta).length) f.meta = meta;
    return f;
  },
  typing: (conversationId, active, note) => ({ type: "typing", conversation_id: conversationId, active, note: !!note }),
  read: (conversationId, seq) => ({ type: "read", conversation_id: conversationId, seq }),
  presence: (state) => ({ type: "presence", state }),
  resume: (conversations) => ({ type: "resume", conversations, ref: "resume" }),
  history: (conversationId, beforeSeq, limit) => {
    const f = { type: "history", conversation_id: conversationId, limit: limit || 50, ref: "history:" + conversationId };
    if (beforeSeq) f.before_seq = beforeSeq;
    return f;
  },
  update: (conversationId, changes, ref) => ({ type: "conversation.update", conversation_id: conversationId, ref, ...changes }),
  deleteMessage: (conversationId, seq, ref) => ({ type: "message.delete", conversation_id: conversationId, seq, ref }),
  refresh: (token) => ({ type: "token.refresh", token, ref: "refresh" }),
  ping: () => ({ type: "ping", ref: "ping" }),
};

export function randomId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
