// omoi dashboard: live updates without a reload. The list follows /live, a spec page its
// /specs/{id}/live stream (the spec's events after the page's last cursor). On news the page
// is read again and every element marked data-live-part is replaced by its new version; a spec
// page also appends each event to its stream, through the page's filter. Text only: nothing
// from the server is inserted as markup except the server's own re-rendered page.
(function () {
  "use strict";
  var body = document.body;
  var mode = body.getAttribute("data-live");
  var page = body.getAttribute("data-page");
  if (!mode || !page || !window.EventSource || !window.DOMParser) return;

  var busy = false;
  var again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(page, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var parts = document.querySelectorAll("[data-live-part]");
        for (var i = 0; i < parts.length; i++) {
          var old = parts[i];
          var fresh = doc.getElementById(old.id);
          if (fresh && fresh.innerHTML !== old.innerHTML) {
            old.replaceWith(document.importNode(fresh, true));
          }
        }
        body.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  if (mode === "list") {
    new EventSource("/live").addEventListener("change", refresh);
    return;
  }

  var list = document.getElementById("event-list");
  var cursor = list ? list.getAttribute("data-cursor") || "0" : "0";
  var kindFilter = list ? list.getAttribute("data-kind") || "" : "";
  var sandboxFilter = list ? list.getAttribute("data-sandbox") || "" : "";
  var MAX_LINES = 500;

  function append(message) {
    var event;
    try { event = JSON.parse(message.data); } catch (e) { return; }
    var kind = String(event.type || "");
    var sandbox = String(event.sandbox_id || "");
    if (kindFilter && kind.indexOf(kindFilter) !== 0) return;
    if (sandboxFilter && sandbox !== sandboxFilter) return;
    if (!list) return;
    var data = JSON.stringify(event.data === undefined ? null : event.data);
    var li = document.createElement("li");
    li.setAttribute("data-kind", kind);
    li.textContent = "#" + message.lastEventId + " " + String(event.at || "").substr(11, 8) +
      " " + kind + " " + sandbox.substr(0, 8) + " " + data.substr(0, 200);
    list.appendChild(li);
    while (list.children.length > MAX_LINES) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  var path = location.pathname.replace(/\/(edit|approve|cancel|resume|message)$/, "");
  var source = new EventSource(path + "/live?after=" + encodeURIComponent(cursor));
  var kinds = [
    "agent.started", "agent.heartbeat", "agent.message", "agent.tool_use", "agent.tool_result",
    "agent.file_edited", "agent.usage", "agent.message_injected", "agent.completed",
    "agent.failed", "spec.execution_started", "spec.phase_started", "spec.eval_result",
    "spec.phase_retry", "spec.phase_completed", "spec.phase_failed",
    "spec.execution_completed", "spec.execution_failed", "task.started", "task.validation",
    "task.committed", "task.completed", "task.failed"
  ];
  kinds.forEach(function (kind) {
    source.addEventListener(kind, function (message) {
      append(message);
      if (kind !== "agent.heartbeat") refresh();
    });
  });
  source.addEventListener("status", refresh);
})();
