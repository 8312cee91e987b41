// Start-up: take over window.Convot from the loader, replay what was queued, then serve the
// API directly.
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
