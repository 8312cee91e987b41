// The inbox's socket to the gateway: authenticate in-band, reconnect with backoff and jitter,
// refresh the token in-band before it expires, detect dead connections, and follow the close
// code ranges (reconnect vs terminal). What the frames mean is the caller's business.
import { backoffDelay, closeAction, frames, refreshDelay, tokenLifetime } from "./protocol.js";

const PING_AFTER_MS = 25000;     // quiet this long: ping
const DEAD_AFTER_MS = 12000;     // a request outstanding this long without any frame: reconnect
const AUTH_TIMEOUT_MS = 10000;

export class Connection {
  // getToken(): Promise<{token, gateway_url?}>; onFrame(frame); onState(state, detail)
  constructor({ url, getToken, onFrame, onState, onReady, onSignedOut }) {
    this.url = url;
    this.getToken = getToken;
    this.onFrame = onFrame;
    this.onState = onState || (() => {});
    this.onReady = onReady || (() => {});
    this.onSignedOut = onSignedOut || (() => {});
    this.ws = null;
    this.state = "idle";
    this.attempt = 0;
    this.token = null;
    this.timers = {};
    this.lastFrameAt = 0;
    this.waitingSince = 0;     // a request is outstanding since (0: none)
    this.stopped = false;
    this._online = () => this._wake();
    this._visible = () => { if (document.visibilityState === "visible") this._wake(); };
    window.addEventListener("online", this._online);
    document.addEventListener("visibilitychange", this._visible);
  }

  get ready() {
    return this.state === "ready";
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    this._clearTimers();
    window.removeEventListener("online", this._online);
    document.removeEventListener("visibilitychange", this._visible);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000, "bye"); } catch (e) { /* already closed */ }
    }
    this._set("stopped");
  }

  // Sends a frame when the socket is ready; false otherwise (the caller keeps it for later).
  send(frame) {
    if (!this.ws || this.state !== "ready" || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    if (frame.ref && !this.waitingSince) this.waitingSince = Date.now();
    return true;
  }

  _set(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  _timer(name, ms, fn) {
    clearTimeout(this.timers[name]);
    if (fn) this.timers[name] = setTimeout(fn, ms);
  }

  _clearTimers() {
    for (const name of Object.keys(this.timers)) clearTimeout(this.timers[name]);
    clearInterval(this.liveness);
    this.timers = {};
  }

  async _connect() {
    if (this.stopped) return;
    this._clearTimers();
    this._set(this.attempt ? "reconnecting" : "connecting");
    let grant;
    try {
      grant = this.token || await this.getToken();
    } catch (e) {
      if (e && (e.code === "unauthorized" || e.status === 401)) {
        this._set("signed_out");
        this.onSignedOut();
        return;
      }
      if (e && (e.status === 403 || e.status === 404)) {
        this._set("stopped", "no_access");
        return;
      }
      this._retry(0);
      return;
    }
    if (this.stopped) return;
    this.token = grant;
    const ws = new WebSocket(grant.gateway_url || this.url);
    this.ws = ws;
    ws.onopen = () => {
      this._set("authenticating");
      ws.send(JSON.stringify(frames.authenticate(grant.token)));
      this._timer("auth", AUTH_TIMEOUT_MS, () => this._drop());
    };
    ws.onmessage = (event) => this._message(event);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => { /* a close event follows */ };
  }

  _message(event) {
    this.lastFrameAt = Date.now();
    this.waitingSince = 0;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "ready") {
      this._timer("auth");
      this.attempt = 0;
      this._set("ready");
      this._scheduleRefresh();
      this._startLiveness();
      this.onReady(frame);
      return;
    }
    if (frame.type === "pong" || frame.type === "token.refreshed") return;
    if (frame.type === "error" && frame.ref === "refresh") {
      // The gateway refused the refreshed token in-band: authenticate a new socket with a new one.
      this.token = null;
      this._drop();
      return;
    }
    this.onFrame(frame);
  }

  _scheduleRefresh() {
    const life = tokenLifetime(this.token.token) || 300;
    this._timer("refresh", refreshDelay(life), async () => {
      try {
        const grant = await this.getToken();
        this.token = grant;
        if (!this.send(frames.refresh(grant.token))) return;
        this._scheduleRefresh();
      } catch (e) {
        if (e && e.status === 401) {
          this._set("signed_out");
          this.onSignedOut();
          return;
        }
        this._timer("refresh", 5000, () => this._scheduleRefresh());
      }
    });
  }

  _startLiveness() {
    clearInterval(this.liveness);
    this.liveness = setInterval(() => {
      if (this.state !== "ready") return;
      const now = Date.now();
      if (this.waitingSince && now - this.waitingSince > DEAD_AFTER_MS) {
        this._drop();
      } else if (now - this.lastFrameAt > PING_AFTER_MS && !this.waitingSince) {
        this.send(frames.ping());
      }
    }, 2000);
  }

  // Closes the current socket from our side and reconnects (the close handler decides).
  // A dead connection may never deliver its close event: treat it as closed at once.
  _drop() {
    const ws = this.ws;
    if (!ws) return;
    ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
    try { ws.close(4000, "client_reconnect"); } catch (e) { /* already closing */ }
    this._closed(ws, 4000, "client_reconnect");
  }

  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.waitingSince = 0;
    clearInterval(this.liveness);
    this._timer("refresh");
    this._timer("auth");
    if (this.stopped) return;
    const action = closeAction(code, reason);
    if (action.then === "signed_out") {
      this._set("signed_out", reason);
      this.onSignedOut(reason);
      return;
    }
    if (action.then === "stop") {
      this._set("stopped", reason || String(code));
      return;
    }
    if (action.then === "new_token") this.token = null;
    this._retry(action.wait || 0);
  }

  _retry(minWait) {
    const delay = Math.max(minWait, backoffDelay(this.attempt));
    this.attempt += 1;
    this._set("waiting", delay);
    this._timer("reconnect", delay, () => this._connect());
  }

  // The browser came back online or the tab became visible: skip the remaining backoff.
  _wake() {
    if (this.state === "waiting" && !this.stopped) {
      this._timer("reconnect");
      this._connect();
    }
  }
}
