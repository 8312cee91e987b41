// The loader: the one <script async> a site embeds after `window.Convot = {app_id: "app_…"}`.
// It turns window.Convot into the API at once, keeping every call in a queue, and loads the
// widget once the page has loaded; the widget replays the queue. Tiny and cached briefly; widget.js is versioned and cached
// for long.
(function (win, doc) {
  "use strict";
  var api = win.Convot;
  if (api && api.__convot) return;
  if (!api || typeof api !== "object") {
    if (win.console) win.console.warn("Convot: set window.Convot = {app_id: \"app_…\"} before the loader script");
    return;
  }
  var script = doc.currentScript;
  if (!api.api_base && script && script.src) api.api_base = script.src.replace(/\/widget\/loader\.js(?:[?#].*)?$/, "");
  if (typeof api.app_id !== "string" || !/^app_[A-Za-z0-9_-]{1,64}$/.test(api.app_id)) {
    if (win.console) win.console.warn("Convot: window.Convot.app_id is missing or malformed");
    return;
  }
  var q = api.q = api.q && api.q.length !== undefined ? api.q : [];
  var names = ["open", "close", "toggle", "show", "hide", "identify", "reset", "onReady", "onUnreadCountChange"];
  for (var i = 0; i < names.length; i++) {
    // Callbacks given in the config object ({onReady: fn}) are kept as queued calls.
    if (typeof api[names[i]] === "function") q.push([names[i], api[names[i]]]);
    (function (name) {
      api[name] = function () {
        q.push([name].concat(Array.prototype.slice.call(arguments)));
      };
    })(names[i]);
  }
  api.push = function (cmd) {
    q.push(cmd);
  };
  api.__convot = "loader";
  // After the page's own load event, so the widget never delays the shop's page.
  var load = function () {
    var s = doc.createElement("script");
    s.async = true;
    s.src = api.api_base + "/widget/widget.js?v=__WIDGET_VERSION__";
    (doc.head || doc.documentElement).appendChild(s);
  };
  if (doc.readyState === "complete") load();
  else win.addEventListener("load", load);
})(window, document);
