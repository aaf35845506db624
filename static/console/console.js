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
          var words = button.textContent;
          button.textContent = button.getAttribute("data-copied") || "Copied";
          setTimeout(function () { button.textContent = words; }, 1500);
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

    // Each editor form: the note's own text, and one per language tab.
    document.querySelectorAll("form[data-preview-url]").forEach(bindEditor);
    bindLanguageTabs(document.querySelector("[data-language-tabs]"));
  });

  // The editor's language tabs: switch without a reload (the links work without a
  // script), keep the address on the tab shown, and move between tabs with the arrows.
  function bindLanguageTabs(tablist) {
    if (!tablist) return;
    var tabs = Array.prototype.slice.call(tablist.querySelectorAll("[role=tab]"));
    function select(tab, focus) {
      tabs.forEach(function (other) {
        var on = other === tab;
        other.setAttribute("aria-selected", on ? "true" : "false");
        other.tabIndex = on ? 0 : -1;
        var panel = document.getElementById(other.getAttribute("aria-controls"));
        if (panel) panel.hidden = !on;
      });
      if (focus) tab.focus();
      if (window.history && history.replaceState) history.replaceState(null, "", tab.href);
    }
    tabs.forEach(function (tab, index) {
      tab.addEventListener("click", function (event) {
        if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        select(tab, false);
      });
      tab.addEventListener("keydown", function (event) {
        var to = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }[event.key];
        if (to === undefined) return;
        event.preventDefault();
        select(tabs[(to + tabs.length) % tabs.length], true);
      });
    });
  }

  // One editor form: its live preview, and, where it has one, its image upload.
  function bindEditor(editor) {
    var body = editor.querySelector("textarea[data-markdown]");
    var title = editor.querySelector("input[data-title]");
    var preview = editor.querySelector("[data-preview]");
    var previewTitle = editor.querySelector("[data-preview-title]");
    if (!body || !preview) return;
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
    if (title && previewTitle) {
      title.addEventListener("input", function () { previewTitle.textContent = title.value; });
    }
    if (body.value && !preview.innerHTML.trim()) refresh();

    // Images: chosen with the button, pasted or dropped into the text; each is uploaded and
    // its Markdown inserted at the cursor, with the alt text selected to be written over.
    var upload = editor.querySelector("[data-upload-url]");
    if (!upload) return;
    var picker = upload.querySelector("input[type=file]");
    var hint = upload.querySelector(".hint");
    var hintText = hint.textContent;
    var uploadError = upload.querySelector(".field-error");
    var MAX_BYTES = 5 * 1024 * 1024;
    var pending = 0;

    function showUploadError(message) {
      uploadError.textContent = message;
      uploadError.hidden = false;
    }

    function insertMarkdown(markdown) {
      var start = body.selectionStart;
      var before = body.value.slice(0, start);
      var after = body.value.slice(body.selectionEnd);
      var lead = !before || /\n\n$/.test(before) ? "" : /\n$/.test(before) ? "\n" : "\n\n";
      var trail = /^\n/.test(after) ? "" : "\n";
      body.setRangeText(lead + markdown + trail, start, body.selectionEnd, "end");
      var altStart = start + lead.length + 2;
      body.focus();
      body.setSelectionRange(altStart, altStart + markdown.indexOf("](") - 2);
      body.dispatchEvent(new Event("input"));
    }

    function uploadImage(file) {
      if (file.size > MAX_BYTES) {
        showUploadError(upload.getAttribute("data-too-big").replace("{name}", file.name));
        return;
      }
      var data = new FormData();
      data.append("image", file, file.name || "image");
      pending += 1;
      hint.textContent = upload.getAttribute("data-uploading");
      fetch(upload.getAttribute("data-upload-url"), {
        method: "POST",
        headers: { "X-CSRFToken": csrf ? csrf.content : "" },
        body: data,
        credentials: "same-origin"
      }).then(function (r) {
        return r.json().then(function (json) { return { ok: r.ok, json: json }; });
      }).then(function (answer) {
        if (answer.ok) insertMarkdown(answer.json.markdown);
        else showUploadError((answer.json.errors && answer.json.errors.image) || answer.json.error);
      }).catch(function () {
        showUploadError(upload.getAttribute("data-failed"));
      }).then(function () {
        pending -= 1;
        if (!pending) hint.textContent = hintText;
      });
    }

    // Upload the images among pasted or dropped files; true if there were any.
    function uploadImages(files) {
      var images = Array.prototype.filter.call(files || [], function (file) {
        return /^image\//.test(file.type);
      });
      if (images.length) uploadError.hidden = true;
      images.forEach(uploadImage);
      return images.length > 0;
    }

    picker.addEventListener("change", function () {
      // A chosen file goes up whatever its type: the answer says what is wrong with it.
      uploadError.hidden = true;
      Array.prototype.forEach.call(picker.files, uploadImage);
      picker.value = "";
    });
    body.addEventListener("paste", function (event) {
      // Text pastes as text; only a pasted image (a screenshot) is uploaded.
      if (event.clipboardData && uploadImages(event.clipboardData.files)) event.preventDefault();
    });
    body.addEventListener("dragover", function (event) {
      if (event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") >= 0) {
        event.preventDefault();
        body.parentNode.classList.add("dropping");
      }
    });
    body.addEventListener("dragleave", function () { body.parentNode.classList.remove("dropping"); });
    body.addEventListener("drop", function (event) {
      body.parentNode.classList.remove("dropping");
      if (event.dataTransfer && uploadImages(event.dataTransfer.files)) event.preventDefault();
    });
  }
})();

// Ticket import (support/import): the chosen file's header line is offered to the column
// mapping at once, and the upload is sent with a progress bar; the page that answers
// replaces this one's main. Without a script the form posts as it is.
(function () {
  "use strict";

  // The cells of one CSV line, quotes honoured: enough for a header line.
  function cells(line, delimiter) {
    var out = [], cell = "", quoted = false;
    for (var i = 0; i < line.length; i++) {
      var c = line.charAt(i);
      if (quoted) {
        if (c !== '"') cell += c;
        else if (line.charAt(i + 1) === '"') { cell += '"'; i++; }
        else quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === delimiter) { out.push(cell.trim()); cell = ""; }
      else cell += c;
    }
    out.push(cell.trim());
    return out;
  }

  // The header line's cells with the delimiter that makes the most, as the server reads it.
  function headers(text) {
    var line = text.replace(/^\uFEFF/, "").split(/\r\n|\n|\r/).filter(function (l) {
      return l.trim();
    })[0] || "";
    return [",", ";", "\t"].map(function (d) { return cells(line, d); }).reduce(function (a, b) {
      return b.length > a.length ? b : a;
    });
  }

  function bind(form) {
    var picker = form.querySelector("input[type=file]");
    var list = document.getElementById("csv-headers");
    var box = form.querySelector(".upload-progress");
    var bar = box.querySelector("progress");
    var status = box.querySelector("[role=status]");
    var buttons = form.querySelectorAll("button[type=submit]");
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);
    bar.style.width = "100%";

    function say(message) {
      box.hidden = false;
      status.textContent = message;
    }
    function busy(on) {
      buttons.forEach(function (button) { button.disabled = on; });
    }

    picker.addEventListener("change", function () {
      var file = picker.files[0];
      if (!file || !list || !window.FileReader) return;
      var reader = new FileReader();
      reader.onload = function () {
        list.textContent = "";
        headers(String(reader.result)).forEach(function (header) {
          if (!header) return;
          var option = document.createElement("option");
          option.value = header;
          list.appendChild(option);
        });
      };
      reader.readAsText(file.slice(0, 64 * 1024));
    });

    form.addEventListener("submit", function (event) {
      var file = picker.files[0];
      if (file && maxBytes && file.size > maxBytes) {
        event.preventDefault();
        say("“" + file.name + "” is over " + Math.floor(maxBytes / 1048576) +
          " MB. Split it in parts, or import it with flask import-tickets.");
        return;
      }
      if (!window.FormData || !window.XMLHttpRequest) return;
      event.preventDefault();
      var data = new FormData(form);
      data.set("step", event.submitter ? event.submitter.value : "import");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") || window.location.href);
      xhr.responseType = "document";
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        bar.value = Math.round((e.loaded / e.total) * 100);
        say("Uploading… " + bar.value + " %");
      });
      xhr.upload.addEventListener("load", function () {
        bar.value = 100;
        say("Uploaded. Reading the rows…");
      });
      xhr.addEventListener("load", function () {
        var page = xhr.response;
        var main = page && page.querySelector("main");
        if (!main || !main.querySelector("form[data-ticket-import]")) {
          // An error page (the form expired, a file past the limit): say what it says.
          var message = main && main.querySelector("p:not(.eyebrow)");
          say(message ? message.textContent : "The upload failed (HTTP " + xhr.status + "). Try again.");
          busy(false);
          return;
        }
        document.querySelector("main").replaceWith(document.adoptNode(main));
        document.title = page.title;
        var heading = document.querySelector("#report h2") || document.querySelector("main h1");
        if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
        var again = document.querySelector("form[data-ticket-import]");
        if (again) bind(again);
      });
      xhr.addEventListener("error", function () {
        say("The upload failed. Check the connection and try again.");
        busy(false);
      });
      bar.value = 0;
      say("Uploading…");
      busy(true);
      xhr.send(data);
    });
  }

  function start() {
    var form = document.querySelector("form[data-ticket-import]");
    if (form) bind(form);
  }
  if (document.readyState !== "loading") start(); else document.addEventListener("DOMContentLoaded", start);
})();
