// desk.js: live delivery progress. The page works without it: the progress page
// refreshes itself (<noscript> meta refresh) and the desk shows counts as of loading.
(function () {
  "use strict";
  var boxes = document.querySelectorAll("[data-progress]");
  boxes.forEach(function (box) {
    var url = box.getAttribute("data-progress");
    var timer = null;
    function show(p) {
      box.querySelectorAll("[data-count]").forEach(function (el) {
        var name = el.getAttribute("data-count");
        if (name in p.counts) { el.textContent = String(p.counts[name]); }
      });
      ["done", "total", "percent", "status"].forEach(function (name) {
        var el = box.querySelector('[data-field="' + name + '"]');
        if (el) { el.textContent = String(p[name]); }
      });
      var status = box.querySelector('[data-field="status"]');
      if (status) { status.className = "badge status-" + p.status; }
      var bar = box.querySelector("progress");
      if (bar) { bar.value = p.percent; bar.textContent = p.percent + " %"; }
      if (!p.sending && timer !== null) { clearInterval(timer); timer = null; }
    }
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) { if (p) { show(p); } })
        .catch(function () { /* keep the last numbers; try again on the next tick */ });
    }
    timer = setInterval(poll, 2000);
    poll();
  });
})();
