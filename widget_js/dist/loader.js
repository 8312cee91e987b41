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
var load = function () {
var s = doc.createElement("script");
s.async = true;
s.src = api.api_base + "/widget/widget.js?v=51a54ad5001f";
(doc.head || doc.documentElement).appendChild(s);
};
if (doc.readyState === "complete") load();
else win.addEventListener("load", load);
})(window, document);
