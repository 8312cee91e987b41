// Desktop notifications and the notification sound, with their preferences kept per browser
// (localStorage), and the unread count in the tab title. A notification never shows a message's
// text when the preference says so, and never for what the agent is looking at.

const KEY = "convot-inbox:prefs";
const DEFAULTS = { desktop: false, sound: true, previews: true };

function storage() {
  try {
    const s = window.localStorage;
    s.getItem(KEY);
    return s;
  } catch (e) {
    return null;   // storage blocked: preferences live in memory for this page
  }
}

export class Notifier {
  constructor() {
    this.store = storage();
    this.memory = { ...DEFAULTS };
    this.audio = null;
    this.baseTitle = document.title;
  }

  prefs() {
    if (!this.store) return { ...this.memory };
    try {
      return { ...DEFAULTS, ...JSON.parse(this.store.getItem(KEY) || "{}") };
    } catch (e) {
      return { ...DEFAULTS };
    }
  }

  setPref(name, value) {
    const next = { ...this.prefs(), [name]: !!value };
    this.memory = next;
    if (this.store) {
      try { this.store.setItem(KEY, JSON.stringify(next)); } catch (e) { /* quota: keep in memory */ }
    }
    return next;
  }

  permission() {
    return "Notification" in window ? Notification.permission : "unsupported";
  }

  // Must run from a user gesture (the preference checkbox).
  async enableDesktop() {
    if (!("Notification" in window)) return "unsupported";
    const result = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    this.setPref("desktop", result === "granted");
    return result;
  }

  // {title, body, tag, onclick}: shown when the preference is on and the page is hidden or
  // the agent is elsewhere; plays the sound when that preference is on.
  notify({ title, body, tag, onclick, force = false }) {
    const prefs = this.prefs();
    if (prefs.sound) this.chime();
    const hidden = document.visibilityState !== "visible" || !document.hasFocus();
    if (!prefs.desktop || this.permission() !== "granted" || (!hidden && !force)) return null;
    try {
      const n = new Notification(title, { body: prefs.previews ? body : "", tag, silent: true });
      n.onclick = () => {
        window.focus();
        if (onclick) onclick();
        n.close();
      };
      return n;
    } catch (e) {
      return null;
    }
  }

  // A short two-tone chime made with WebAudio: no media file, nothing fetched.
  chime() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      if (!this.audio) this.audio = new Ctx();
      const ctx = this.audio;
      if (ctx.state === "suspended") ctx.resume();
      const now = ctx.currentTime;
      [[880, 0], [1320, 0.12]].forEach(([freq, offset]) => {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, now + offset);
        gain.gain.exponentialRampToValueAtTime(0.15, now + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.25);
        osc.connect(gain).connect(ctx.destination);
        osc.start(now + offset);
        osc.stop(now + offset + 0.3);
      });
      this.chimes = (this.chimes || 0) + 1;
    } catch (e) {
      /* audio unavailable: nothing to do */
    }
  }

  setUnread(count) {
    document.title = (count > 0 ? "(" + (count > 99 ? "99+" : count) + ") " : "") + this.baseTitle;
  }
}
