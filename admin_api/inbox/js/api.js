// The admin API as the inbox calls it: JSON over fetch with the session cookie, the CSRF token
// on every state-changing request, the error envelope turned into ApiError, and one place that
// reacts to a lost session (401) or a needed re-authentication (403 reauth_required).

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }

  get field() {
    return this.details && this.details.field;
  }
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

export class Api {
  constructor() {
    this.onSignedOut = null;   // () => void: the session ended (401 on an authenticated call)
    this.onReauth = null;      // async () => bool: ask for the password; true when confirmed
  }

  csrf() {
    return readCookie("convot_csrf");
  }

  async request(method, path, body, { quiet401 = false, retried = false, headers: extra = null } = {}) {
    const headers = { Accept: "application/json", ...(extra || {}) };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (UNSAFE.has(method)) headers["X-CSRF-Token"] = this.csrf();
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "network_error", "The server cannot be reached. Check your connection and try again.");
    }
    if (response.status === 204) return null;
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    if (response.ok) return data;
    const err = data && data.error ? data.error : {};
    const error = new ApiError(response.status, err.code || "http_" + response.status, err.message || response.statusText, err.details);
    if (response.status === 429) {
      const after = parseInt(response.headers.get("Retry-After") || "", 10);
      if (after > 0) error.message = "Too many attempts. Try again in " + (after < 90 ? after + " seconds." : Math.ceil(after / 60) + " minutes.");
    }
    if (error.code === "unauthorized" && !quiet401 && this.onSignedOut) this.onSignedOut();
    if (error.code === "reauth_required" && !retried && this.onReauth) {
      if (await this.onReauth()) return this.request(method, path, body, { quiet401, retried: true, headers: extra });
    }
    throw error;
  }

  get(path, opts) { return this.request("GET", path, undefined, opts); }
  post(path, body, opts) { return this.request("POST", path, body, opts); }
  patch(path, body, opts) { return this.request("PATCH", path, body, opts); }
  put(path, body, opts) { return this.request("PUT", path, body, opts); }
  del(path, opts) { return this.request("DELETE", path, undefined, opts); }
}

// Paths of the admin API the inbox uses, in one place (docs/admin-api.md, docs/rest-api.md).
export const paths = {
  session: "/v1/auth/session",
  login: "/v1/auth/login",
  logout: "/v1/auth/logout",
  mfa: "/v1/auth/mfa",
  signup: "/v1/auth/signup",
  verifyEmail: "/v1/auth/verify-email",
  resetRequest: "/v1/auth/password/reset-request",
  reset: "/v1/auth/password/reset",
  reauth: "/v1/auth/reauth",
  me: "/v1/me",
  confirmEmail: "/v1/me/email/confirm",
  sessions: "/v1/me/sessions",
  session_: (id) => "/v1/me/sessions/" + encodeURIComponent(id),
  revokeOthers: "/v1/me/sessions/revoke-others",
  myMfa: "/v1/me/mfa",
  totpSetup: "/v1/me/mfa/totp/setup",
  totpEnable: "/v1/me/mfa/totp/enable",
  totpDisable: "/v1/me/mfa/totp/disable",
  recoveryCodes: "/v1/me/mfa/recovery-codes",
  inspectInvite: "/v1/invites/inspect",
  acceptInvite: "/v1/invites/accept",
  orgs: "/v1/orgs",
  org: (o) => "/v1/orgs/" + o,
  requireMfa: (o) => "/v1/orgs/" + o + "/require-mfa",
  restoreOrg: (o) => "/v1/orgs/" + o + "/restore",
  members: (o) => "/v1/orgs/" + o + "/members",
  member: (o, u) => "/v1/orgs/" + o + "/members/" + u,
  invites: (o) => "/v1/orgs/" + o + "/invites",
  invite: (o, i) => "/v1/orgs/" + o + "/invites/" + i,
  audit: (o) => "/v1/orgs/" + o + "/audit",
  authEvents: (o) => "/v1/orgs/" + o + "/auth-events",
  apps: (o) => "/v1/orgs/" + o + "/apps",
  app: (o, a) => "/v1/orgs/" + o + "/apps/" + a,
  identitySecret: (o, a) => "/v1/orgs/" + o + "/apps/" + a + "/identity-secret",
  rotateSecret: (o, a) => "/v1/orgs/" + o + "/apps/" + a + "/identity-secret/rotate",
  apiKeys: (o) => "/v1/orgs/" + o + "/api-keys",
  apiKey: (o, k) => "/v1/orgs/" + o + "/api-keys/" + encodeURIComponent(k),
  webhooks: (o) => "/v1/orgs/" + o + "/webhooks",
  webhook: (o, w) => "/v1/orgs/" + o + "/webhooks/" + w,
  webhookTest: (o, w) => "/v1/orgs/" + o + "/webhooks/" + w + "/test",
  webhookDeliveries: (o, w) => "/v1/orgs/" + o + "/webhooks/" + w + "/deliveries",
  exports: (o) => "/v1/orgs/" + o + "/exports",
  exportLink: (o, x) => "/v1/orgs/" + o + "/exports/" + x + "/link",
  webhookSecret: (o, w) => "/v1/orgs/" + o + "/webhooks/" + w + "/secret",
  rotateWebhookSecret: (o, w) => "/v1/orgs/" + o + "/webhooks/" + w + "/secret/rotate",
  socketToken: (o) => "/v1/orgs/" + o + "/socket-token",
  conversations: (o) => "/v1/orgs/" + o + "/conversations",
  conversation: (o, c) => "/v1/orgs/" + o + "/conversations/" + c,
  contact: (o, c) => "/v1/orgs/" + o + "/contacts/" + c,
  merchant: (o, c) => "/v1/orgs/" + o + "/contacts/" + c + "/merchant",
  tags: (o) => "/v1/orgs/" + o + "/tags",
  search: (o) => "/v1/orgs/" + o + "/search",
  availability: (o) => "/v1/orgs/" + o + "/availability",
  memberAvailability: (o, u) => "/v1/orgs/" + o + "/members/" + u + "/availability",
};
