// The console's small helpers. No inline scripts: the CSP forbids them.
(function () {
  "use strict";

  // Remember the browser's time zone so the server shows and reads times in it.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/console; SameSite=Lax";
  } catch (e) { /* older browsers: times stay in UTC, and the form says so */ }

  var csrf = document.querySelector('meta[name="csrf-token"]');

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    // Colour swatches come from data attributes (no inline styles under the CSP).
    document.querySelectorAll("[data-color]").forEach(function (el) {
      var c = el.getAttribute("data-color");
      if (/^#[0-9a-fA-F]{6}$/.test(c)) el.style.setProperty("--swatch", c);
    });

    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });

    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });

    // Copy buttons beside code: the install snippet and the hash samples.
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source || !navigator.clipboard) return;
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        }).catch(function () { /* the text can still be selected by hand */ });
      });
    });

    // A note's emails going out: follow the counts until nothing is left in the queue.
    var delivery = document.querySelector("[data-delivery-url]");
    if (delivery) {
      var poll = function () {
        fetch(delivery.getAttribute("data-delivery-url"), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (counts) {
            var done = counts.sent + counts.failed + counts.skipped;
            Object.keys(counts).forEach(function (key) {
              var cell = delivery.querySelector('[data-count="' + key + '"]');
              if (cell) cell.textContent = counts[key].toLocaleString();
            });
            var bar = delivery.querySelector("progress");
            if (bar) { bar.max = done + counts.queued; bar.value = done; }
            if (counts.queued > 0) setTimeout(poll, 2000);
          }).catch(function () { setTimeout(poll, 10000); });
      };
      setTimeout(poll, 1000);
    }

    // "Email subscribers" follows "Important" on a new note until it is set by hand.
    var important = document.querySelector("input[name=is_important]");
    var emailIt = document.querySelector("input[name=email_subscribers]");
    if (important && emailIt && !document.querySelector("[data-note-id]")) {
      var touched = false;
      emailIt.addEventListener("change", function () { touched = true; });
      important.addEventListener("change", function () {
        if (!touched) emailIt.checked = important.checked;
      });
    }

    var editor = document.querySelector("form[data-preview-url]");
    if (!editor) return;
    var body = editor.querySelector("textarea[name=body_md]");
    var title = editor.querySelector("input[name=title]");
    var preview = document.getElementById("preview");
    var previewTitle = document.getElementById("preview-title");
    var timer = null;
    var sent = null;

    function refresh() {
      if (body.value === sent) return;
      sent = body.value;
      var data = new URLSearchParams();
      data.set("body_md", body.value);
      fetch(editor.getAttribute("data-preview-url"), {
        method: "POST",
        headers: { "X-CSRFToken": csrf ? csrf.content : "" },
        body: data,
        credentials: "same-origin"
      }).then(function (r) { return r.json(); }).then(function (json) {
        // The server renders through the same sanitiser that publishing uses.
        if (json.html !== undefined) preview.innerHTML = json.html;
        else if (json.error) preview.textContent = json.error;
      }).catch(function () { /* keep the last preview */ });
    }

    body.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    title.addEventListener("input", function () { previewTitle.textContent = title.value; });
    if (body.value && !preview.innerHTML.trim()) refresh();
  });
})();
