// Tell the server the browser's time zone, so date-times show and parse in local time.
(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && document.cookie.indexOf("tz=" + encodeURIComponent(zone)) === -1) {
    document.cookie = "tz=" + encodeURIComponent(zone) + ";path=/;max-age=31536000;samesite=lax";
  }
})();

// Unsaved edits: ask before leaving the ticket form with changes that were not saved. A
// form re-rendered after a failed save carries data-unsaved: the user's input is still
// only on the page.
(function () {
  var dirty = false;
  var form = null;

  // Only a new form (page load, a save's answer) says whether it holds unsaved input;
  // smaller swaps (a field checked inline, the history panel) leave the state alone.
  function fromPage() {
    var current = document.getElementById("edit-form");
    if (current === form) return;
    form = current;
    dirty = !!(form && form.hasAttribute("data-unsaved"));
  }

  function edited(event) {
    var form = event.target.form;
    if (form && form.id === "edit-form") dirty = true;
  }

  document.addEventListener("DOMContentLoaded", fromPage);
  document.addEventListener("htmx:afterSettle", fromPage);
  document.addEventListener("input", edited);
  document.addEventListener("change", edited);
  document.addEventListener("submit", function (event) {
    if (event.target.id === "edit-form") dirty = false;
  });
  // A save that never came back leaves the input unsaved.
  ["htmx:sendError", "htmx:responseError"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      if (event.target.id === "edit-form") dirty = true;
    });
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-discard]")) dirty = false;
  });
  window.addEventListener("beforeunload", function (event) {
    if (dirty) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
})();

// A field checked inline is replaced by the server's answer. An answer about a value the
// user has changed since is dropped, so it cannot put the older value back (the newer
// value is checked by the request its own change queued).
(function () {
  var FIELD = ".field[hx-post]";
  var edits = new WeakMap();

  function field(node) {
    return node && node.closest ? node.closest(FIELD) : null;
  }
  function count(event) {
    var target = field(event.target);
    if (target) edits.set(target, (edits.get(target) || 0) + 1);
  }
  // Capture: counted before htmx, listening on the field, sends the request.
  document.addEventListener("input", count, true);
  document.addEventListener("change", count, true);
  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.elt;
    if (target.matches && target.matches(FIELD)) target.dataset.checked = edits.get(target) || 0;
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.elt;
    if (!target.matches || !target.matches(FIELD)) return;
    if (String(edits.get(target) || 0) !== target.dataset.checked) event.detail.shouldSwap = false;
  });
})();

// Bulk selection: the header box ticks every ticket of the page. It is hidden until this
// script runs, so without JS there is no box that does nothing.
(function () {
  function boxes(name) {
    return document.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
  }
  function show() {
    document.querySelectorAll("[data-select-all]").forEach(function (all) {
      all.hidden = false;
    });
  }
  document.addEventListener("DOMContentLoaded", show);
  document.addEventListener("htmx:afterSettle", show);
  document.addEventListener("change", function (event) {
    var all = event.target;
    if (!all.matches || !all.matches("[data-select-all]")) return;
    boxes(all.getAttribute("data-select-all")).forEach(function (box) {
      box.checked = all.checked;
    });
  });
})();
