// The dashboard's only script of its own: pause live updates, show refused actions, and keep the
// rows ticked for bulk actions. Everything else is htmx attributes in the templates; pages work
// without this file (then there is no "select all", and a live update may untick a row).
(function () {
  "use strict";
  var paused = false;

  function setPaused(value) {
    paused = value;
    var button = document.getElementById("live-toggle");
    if (button) {
      button.textContent = paused ? "Resume live updates" : "Pause live updates";
      button.setAttribute("aria-pressed", String(paused));
    }
    var state = document.getElementById("live-state");
    if (state) state.textContent = paused ? "· live updates paused" : "";
    // On resume, the table is fetched once to catch up with what happened meanwhile.
    if (!paused) document.body.dispatchEvent(new CustomEvent("taskflow:resume"));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("live-toggle");
    if (button) {
      button.hidden = false;
      button.addEventListener("click", function () { setPaused(!paused); });
    }
  });

  // While paused, drop stream messages and the metrics' polling (the server is not asked at all).
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (paused) event.preventDefault();
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (paused && source && source.hasAttribute("data-live")) event.preventDefault();
  });
  document.addEventListener("htmx:afterSwap", function () {
    var state = document.getElementById("live-state");
    if (state && paused) state.textContent = "· live updates paused";
  });

  // Ticked rows survive the live updates that swap them: their ids are remembered here and
  // ticked again after each swap. Only rows on the page are sent (the form holds their boxes).
  var picked = new Set();

  function rowBoxes() {
    return Array.prototype.slice.call(document.querySelectorAll('input[name="ids"][form="bulk-form"]'));
  }

  function syncPicks() {
    var boxes = rowBoxes();
    var ticked = 0;
    boxes.forEach(function (box) {
      box.checked = picked.has(box.value);
      if (box.checked) ticked += 1;
    });
    var all = document.getElementById("select-all");
    if (all) {
      all.hidden = false;
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
    var count = document.getElementById("bulk-count");
    if (count) count.textContent = ticked + " selected:";
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.id === "select-all") {
      rowBoxes().forEach(function (row) {
        if (box.checked) picked.add(row.value); else picked.delete(row.value);
      });
    } else if (box.name === "ids" && box.getAttribute("form") === "bulk-form") {
      if (box.checked) picked.add(box.value); else picked.delete(box.value);
    } else {
      return;
    }
    syncPicks();
  });
  document.addEventListener("DOMContentLoaded", function () {
    rowBoxes().forEach(function (box) { if (box.checked) picked.add(box.value); });  // kept by Back
    syncPicks();
  });
  document.addEventListener("htmx:afterSettle", syncPicks);
  document.addEventListener("htmx:oobAfterSwap", syncPicks);

  // An action the server refused (409, 403, ...): show its message instead of doing nothing.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = "The server refused: " + xhr.status;
    var match = /<p class="error"[^>]*>([\s\S]*?)<\/p>/.exec(xhr.responseText || "");
    if (match) {
      var holder = document.createElement("div");
      holder.innerHTML = match[1];  // parsed, never inserted: only its text is used
      text = holder.textContent;
    } else {
      try { text = JSON.parse(xhr.responseText).detail || text; } catch (e) { /* not JSON */ }
    }
    window.alert(text);
  });
})();
