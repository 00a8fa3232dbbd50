// The dashboard's only script of its own: pause live updates, and show refused actions.
// Everything else is htmx attributes in the templates; pages work without this file.
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
