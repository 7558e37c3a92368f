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

// Keyboard shortcuts (listed in the #keys-help dialog of base.html). Listeners sit on the
// document, so rows and forms that htmx swaps in work without being bound again.
(function () {
  var ROWS = "#ticket-table tbody tr";

  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest("input, textarea, select, [contenteditable]:not([contenteditable=false])");
  }

  function help() {
    return document.getElementById("keys-help");
  }

  function openHelp() {
    var dialog = help();
    if (!dialog) return false;
    if (!dialog.open) {
      dialog.returnFocus = document.activeElement;
      dialog.showModal();
    }
    return true;
  }

  function search() {
    var input = document.getElementById("id_q");
    if (!input) return false;
    input.focus();
    input.select();
    return true;
  }

  // j/k: one row is current; its identifier link holds the focus, so Enter opens it.
  function move(step) {
    var rows = Array.prototype.filter.call(document.querySelectorAll(ROWS), function (row) {
      return row.querySelector("a.row-link");
    });
    if (!rows.length) return false;
    var index = rows.findIndex(function (row) {
      return row.contains(document.activeElement);
    });
    if (index === -1) {
      index = rows.findIndex(function (row) {
        return row.classList.contains("is-current");
      });
    }
    index = index === -1 ? 0 : Math.min(Math.max(index + step, 0), rows.length - 1);
    rows.forEach(function (row, i) {
      row.classList.toggle("is-current", i === index);
    });
    rows[index].querySelector("a.row-link").focus({ preventScroll: true });
    rows[index].scrollIntoView({ block: "nearest" });
    return true;
  }

  // Ctrl/Cmd+S saves through the form's own submit, so htmx sends it as the Save button would.
  function save() {
    var form = document.getElementById("edit-form");
    if (!form) return false;
    var button = document.getElementById("save");
    if (!(button && button.disabled)) form.requestSubmit(button || undefined);
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    var key = event.key || ""; // none on the keydown of an autofill
    var command = event.ctrlKey || event.metaKey;
    if (command && !event.altKey && !event.shiftKey && key.toLowerCase() === "s") {
      // Also while typing: no browser "Save page". Not while a modal dialog is open: the
      // form behind it is inert.
      if (document.querySelector("dialog[open]") || save()) event.preventDefault();
      return;
    }
    if (event.ctrlKey || event.altKey || event.metaKey || typing(event.target)) return;
    if (help() && help().open) return;
    var done = false;
    if (key === "/") done = search();
    else if (key === "j") done = move(1);
    else if (key === "k") done = move(-1);
    else if (key === "?") done = openHelp();
    if (done) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-keys-help]")) openHelp();
  });

  // Closing (Esc, the Close button) gives the focus back to where it was.
  document.addEventListener(
    "close",
    function (event) {
      var dialog = event.target;
      if (dialog.id !== "keys-help") return;
      var back = dialog.returnFocus;
      dialog.returnFocus = null;
      if (back && back.focus && document.contains(back)) back.focus();
    },
    true
  );

  function showButtons() {
    document.querySelectorAll("[data-keys-help]").forEach(function (button) {
      button.hidden = false;
    });
  }
  document.addEventListener("DOMContentLoaded", showButtons);
})();

// On a phone, the list's filters but the search and the team fold away behind one button
// that says how many are set (the CSS folds them only at phone width). Open or folded,
// they stay so when the list is swapped.
(function () {
  var open = false;

  function show(button) {
    var set = Array.prototype.filter.call(
      button.form.querySelectorAll(".filter-fields select:not([name=sort])"),
      function (select) { return select.value !== ""; }
    ).length;
    button.textContent = set ? "Filters (" + set + " set)" : "Filters";
    button.setAttribute("aria-expanded", String(open));
    button.form.classList.toggle("folded", !open);
  }
  function setUp() {
    var button = document.querySelector("[data-filters-toggle]");
    if (!button) return;
    button.hidden = false;
    show(button);
  }
  document.addEventListener("DOMContentLoaded", setUp);
  document.addEventListener("htmx:afterSettle", setUp);
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-filters-toggle]");
    if (!button) return;
    open = !open;
    show(button);
  });
  document.addEventListener("change", function (event) {
    var button = event.target.form && event.target.form.querySelector("[data-filters-toggle]");
    if (button && !button.hidden) show(button);
  });
})();

// A change of team swaps the whole list, filters included (#ticket-list), as the form was
// when the team changed. A filter set or a word typed while that loads would go with the
// old form: it is carried into the new one, which then fetches its own table.
(function () {
  var sent = null; // the filters as the change of team sent them
  var kept = null; // what the user changed since

  function values(form) {
    var all = {};
    new FormData(form).forEach(function (value, name) { all[name] = value; });
    return all;
  }
  // The filters, when `event` is about a change of team (a request for #ticket-list).
  function filtersOfTeamChange(event) {
    var target = event.detail.target;
    return target && target.id === "ticket-list" && document.getElementById("filters");
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = filtersOfTeamChange(event);
    if (form) sent = values(form);
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = filtersOfTeamChange(event);
    if (!form || !sent || !event.detail.shouldSwap) return;
    var now = values(form);
    kept = {};
    Object.keys(now).forEach(function (name) {
      if (name !== "team" && now[name] !== sent[name]) kept[name] = now[name];
    });
    sent = null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var form = kept && document.getElementById("filters");
    var changed = false;
    Object.keys(kept || {}).forEach(function (name) {
      var control = form.elements[name];
      if (!control || control.value === kept[name]) return;
      // A choice the new team does not offer stays as the new list has it.
      if (control.tagName === "SELECT" && !Array.prototype.some.call(control.options,
        function (option) { return option.value === kept[name]; })) return;
      control.value = kept[name];
      if (control === document.activeElement && control.setSelectionRange) {
        control.setSelectionRange(control.value.length, control.value.length);
      }
      changed = true;
    });
    kept = null;
    if (changed) form.requestSubmit();
  });
})();

// A number or date the browser cannot read ("12e", 30 February, a date half deleted:
// validity.badInput) is sent as empty, which reads as clearing the field. Its inline check
// and the save stop here instead, with the reason beside the field and the input kept.
(function () {
  var NOTE = "data-unreadable";

  function unreadable(inputs) {
    return Array.prototype.filter.call(inputs, function (input) {
      return input.validity && input.validity.badInput;
    });
  }
  function say(input) {
    var field = input.closest(".field") || input.parentNode;
    if (field.querySelector("[" + NOTE + "]")) return;
    var note = document.createElement("p");
    note.className = "field-error";
    note.id = input.id + "_unreadable";
    note.setAttribute(NOTE, "");
    note.textContent = input.type === "number" ? "Enter a number, or leave it empty."
      : "Enter a whole date" + (input.type === "date" ? "" : " and time") + ", or clear it.";
    field.appendChild(note);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby",
      ((input.getAttribute("aria-describedby") || "") + " " + note.id).trim());
  }
  function unsay(input) {
    var field = input.closest(".field") || input.parentNode;
    var note = field.querySelector("[" + NOTE + "]");
    if (!note) return;
    note.remove();
    var rest = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
      return id && id !== note.id;
    });
    if (rest.length) input.setAttribute("aria-describedby", rest.join(" "));
    else input.removeAttribute("aria-describedby");
    input.removeAttribute("aria-invalid");
  }

  // Capture, on the document: before htmx, listening on the form, sends it.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "edit-form") return;
    var bad = unreadable(form.elements);
    Array.prototype.forEach.call(form.elements, function (input) {
      if (bad.indexOf(input) === -1) unsay(input);
    });
    if (!bad.length) return;
    bad.forEach(say);
    event.preventDefault();
    event.stopPropagation();
    bad[0].focus();
  }, true);
  document.addEventListener("htmx:beforeRequest", function (event) {
    var field = event.detail.elt;
    if (!field.matches || !field.matches(".field[hx-post]")) return;
    var bad = unreadable(field.querySelectorAll("input"));
    if (!bad.length) return;
    event.preventDefault(); // the server would answer for an empty field, and replace it
    bad.forEach(say);
  });
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (input.validity && !input.validity.badInput && input.closest) unsay(input);
  });
})();
