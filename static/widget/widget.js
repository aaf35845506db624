/*
 * Tidings widget: what's new, inside your product.
 *
 * Load it with <script src="https://tidings.example/widget.js" defer></script> after
 * setting window.tidings = {product, user: {id, hash, email, email_hash, version, locale,
 * attributes}},
 * or call Tidings.init({...}) yourself. It draws inside a Shadow DOM, talks only to
 * the Tidings server it was loaded from, and never throws into the host page.
 */
(function () {
  "use strict";
  if (window.Tidings && window.Tidings.version) return;

  var SCRIPT = document.currentScript;
  var DEFAULT_BASE = SCRIPT && SCRIPT.src ? new URL(SCRIPT.src, location.href).origin : "";
  var REFRESH_MS = 5 * 60 * 1000;
  var PAGE = 20;
  var REACTIONS = [["👍", "Helpful"], ["👎", "Not helpful"], ["😕", "Confusing"]];
  var CSS = [
    ".tw{all:initial;font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#111827;--accent:#4f46e5}",
    ".tw *{box-sizing:border-box;font:inherit;color:inherit}",
    ".tw button{cursor:pointer;border:0;background:none;margin:0;padding:0}",
    ".tw :focus-visible{outline:3px solid color-mix(in srgb,var(--accent) 50%,transparent);outline-offset:2px}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483647;width:52px;height:52px;border-radius:50%;background:var(--accent)!important;color:#fff;display:flex;align-items:center;justify-content:center;box-shadow:0 6px 20px rgb(17 24 39/25%)}",
    ".launcher svg{width:24px;height:24px;fill:none;stroke:#fff;stroke-width:2}",
    ".count{position:absolute;top:-4px;right:-4px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#dc2626;color:#fff!important;font-size:12px;font-weight:700;line-height:22px;text-align:center;border:2px solid #fff}",
    ".count[hidden],[hidden]{display:none!important}",
    ".panel{position:fixed;top:0;right:0;bottom:0;z-index:2147483647;width:400px;max-width:100vw;background:#fff;box-shadow:-8px 0 30px rgb(17 24 39/18%);display:flex;flex-direction:column}",
    ".head{display:flex;align-items:center;gap:10px;padding:16px 18px;border-bottom:1px solid #e5e7eb}",
    ".head h2{margin:0;font-size:17px;font-weight:700;flex:1}",
    ".head small{display:block;font-size:12px;color:#6b7280;font-weight:500}",
    ".x{width:34px;height:34px;border-radius:8px;font-size:22px!important;line-height:34px;color:#4b5563!important}",
    ".x:hover{background:#f3f4f6}",
    ".list{overflow-y:auto;flex:1;padding:6px 18px 18px;overscroll-behavior:contain}",
    ".note{padding:16px 0;border-bottom:1px solid #f0f1f4}",
    ".meta{display:flex;flex-wrap:wrap;align-items:center;gap:8px;font-size:12px;color:#6b7280}",
    ".pill{font-size:11px;font-weight:700;letter-spacing:.02em;text-transform:uppercase;padding:2px 8px;border-radius:999px;background:#eef2ff;color:#3730a3}",
    ".pill.Fixed{background:#ecfdf5;color:#047857}.pill.Security{background:#fef2f2;color:#b91c1c}",
    ".pill.Deprecated,.pill.Removed{background:#fffbeb;color:#92400e}.pill.Changed{background:#f0f9ff;color:#0369a1}",
    ".new{width:8px;height:8px;border-radius:50%;background:var(--accent)}",
    ".note h3{margin:8px 0 6px;font-size:15px;font-weight:700;line-height:1.35}",
    ".body{color:#374151;overflow-wrap:anywhere}",
    ".body p,.body ul,.body ol,.body pre,.body table,.body blockquote{margin:0 0 8px}",
    ".body ul,.body ol{padding-left:20px}",
    ".body a,.more{color:var(--accent)!important;text-decoration:underline}",
    ".body img{max-width:100%;height:auto;border-radius:6px}",
    ".body code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;background:#f3f4f6;padding:1px 4px;border-radius:4px}",
    ".body pre{background:#f3f4f6;padding:8px;border-radius:6px;overflow-x:auto}.body pre code{padding:0}",
    ".body table{border-collapse:collapse;display:block;overflow-x:auto}.body th,.body td{border:1px solid #e5e7eb;padding:4px 8px}",
    ".body blockquote{border-left:3px solid #e5e7eb;padding-left:10px;color:#6b7280}",
    ".foot{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin-top:8px}",
    ".react{padding:3px 9px!important;border:1px solid #e5e7eb!important;border-radius:999px;font-size:14px}",
    ".react[aria-pressed=true]{border-color:var(--accent)!important;background:#eef2ff!important}",
    ".more{margin-left:auto;font-size:12px}",
    ".comment{display:flex;gap:6px;width:100%;margin-top:6px}",
    ".comment textarea{flex:1;min-height:38px;resize:vertical;border:1px solid #d1d5db;border-radius:8px;padding:6px 8px}",
    ".btn{padding:7px 14px!important;border-radius:8px;background:var(--accent)!important;color:#fff!important;font-weight:600}",
    ".load{display:block;margin:14px auto 0;padding:8px 14px!important;border:1px solid #d1d5db!important;border-radius:8px}",
    ".empty{padding:40px 10px;text-align:center;color:#6b7280}",
    ".mail{display:flex;align-items:center;justify-content:space-between;gap:10px;padding:10px 16px;border-top:1px solid #e5e7eb;font-size:13px;color:#6b7280}",
    ".mail span{overflow-wrap:anywhere}.mail[hidden]{display:none}",
    ".veil{position:fixed;inset:0;z-index:2147483647;background:rgb(17 24 39/45%);display:flex;align-items:center;justify-content:center;padding:16px}",
    ".modal{background:#fff;border-radius:14px;max-width:520px;width:100%;max-height:85vh;overflow-y:auto;padding:22px 24px;box-shadow:0 20px 50px rgb(17 24 39/30%)}",
    ".modal h2{margin:8px 0;font-size:19px;font-weight:700}",
    ".modal .actions{display:flex;justify-content:flex-end;gap:8px;margin-top:14px}",
    "@media (max-width:480px){.panel{width:100vw}.launcher{right:14px;bottom:14px}}",
  ].join("");
  var BELL = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9"/><path d="M10.3 21a1.9 1.9 0 0 0 3.4 0"/></svg>';

  var config = null;
  var state = { notes: [], unread: 0, cursor: null, product: null, open: false, lastFocus: null, mail: null, addressSent: false };
  var ui = {};

  function warn(error) {
    if (window.console && console.warn) console.warn("[tidings]", error);
  }

  /* Every entry point is guarded: a widget bug must never break the host page. */
  function guard(fn) {
    return function () {
      try {
        return fn.apply(this, arguments);
      } catch (error) {
        warn(error);
      }
    };
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), guard(attrs[name]));
      else if (attrs[name] !== null && attrs[name] !== undefined) node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  /* Anonymous users: read state lives in this browser only. */
  function storageKey() { return "tidings:" + config.product + ":read"; }

  function localReads() {
    try {
      var raw = localStorage.getItem(storageKey());
      return raw === null ? null : JSON.parse(raw);
    } catch (error) {
      return [];
    }
  }

  function saveLocalReads(ids) {
    try { localStorage.setItem(storageKey(), JSON.stringify(ids.slice(-500))); } catch (error) { warn(error); }
  }

  function anonymous() { return !(config.user && config.user.id); }

  function api(path) { return (config.apiBase || DEFAULT_BASE) + "/api/v1/widget/" + encodeURIComponent(config.product) + path; }

  function notesUrl(cursor) {
    var user = config.user || {};
    var query = new URLSearchParams({ limit: String(PAGE) });
    if (user.id) { query.set("user_id", String(user.id)); query.set("user_hash", user.hash || ""); }
    if (user.version) query.set("version", user.version);
    if (user.locale) query.set("locale", user.locale);
    Object.keys(user.attributes || {}).forEach(function (name) {
      var value = user.attributes[name];
      if (value !== null && value !== undefined) query.set("attr." + name, String(value));
    });
    if (cursor) query.set("cursor", cursor);
    return api("/notes?" + query.toString());
  }

  function request(url, body) {
    var options = { credentials: "omit", cache: "no-cache", mode: "cors" };
    if (body) {
      options.method = "POST";
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          throw new Error(response.status + " " + (data.error || response.statusText));
        });
      }
      return response.status === 204 ? null : response.json();
    });
  }

  function load(cursor) {
    return request(notesUrl(cursor)).then(guard(function (data) {
      state.product = data.product;
      if (anonymous()) applyLocalReads(data);
      state.notes = cursor ? state.notes.concat(data.notes) : data.notes;
      state.cursor = data.next_cursor;
      setUnread(data.unread_count);
      render();
      if (!cursor) popImportant();
      sendAddress();
    }));
  }

  /* A signed address lets the user's help-desk tickets find them; Tidings keeps a keyed
     hash of it, never the address. It goes in a POST body, never in a URL (where access
     logs and proxies would keep it), and once per tab: sessionStorage, which each tab
     keeps apart, remembers it was sent, so later page views in the tab send nothing. */
  function identityKey() {
    return "tidings:" + config.product + ":identity:" + config.user.id + ":" + config.user.email_hash;
  }

  function sendAddress() {
    var user = config.user || {};
    if (state.addressSent || anonymous() || !user.email || !user.email_hash) return;
    state.addressSent = true;
    try {
      if (sessionStorage.getItem(identityKey())) return;
      sessionStorage.setItem(identityKey(), "1");
    } catch (error) {
      /* Storage refused (a sandboxed frame, say): this page view sends it once. */
    }
    var body = identity();
    body.email = String(user.email);
    body.email_hash = user.email_hash;
    request(api("/identity"), body).catch(function (error) {
      try { sessionStorage.removeItem(identityKey()); } catch (ignored) { /* nothing to undo */ }
      warn(error);
    });
  }

  function applyLocalReads(data) {
    var read = localReads();
    if (read === null) {
      /* First visit: only the newest release starts unread, as for identified users. */
      var newest = data.notes.length ? data.notes[0].version : null;
      read = data.notes.filter(function (n) { return n.version !== newest; }).map(function (n) { return n.id; });
      saveLocalReads(read);
    }
    data.notes.forEach(function (note) {
      if (read.indexOf(note.id) !== -1 && !note.read) { note.read = true; data.unread_count -= 1; }
    });
    data.unread_count = Math.max(0, data.unread_count);
  }

  /* A quiet note is held back from this user for a while (a hold-back experiment): it is
     listed, and reading it is recorded, but it was never in the count and never pops up. */
  function markRead(notes) {
    var fresh = notes.filter(function (note) { return !note.read; });
    if (!fresh.length) return;
    fresh.forEach(function (note) { note.read = true; });
    setUnread(state.unread - fresh.filter(function (note) { return !note.quiet; }).length);
    var ids = fresh.map(function (note) { return note.id; });
    if (anonymous()) {
      saveLocalReads((localReads() || []).concat(ids));
      return;
    }
    var body = identity();
    body.note_ids = ids;
    request(api("/reads"), body).catch(warn);
  }

  function react(note, reaction, comment) {
    var chosen = note.reaction === reaction && comment === undefined ? null : reaction;
    note.reaction = chosen;
    render();
    if (anonymous()) return;
    var body = identity();
    body.note_id = note.id;
    body.reaction = chosen;
    body.comment = comment || null;
    request(api("/reactions"), body).catch(warn);
  }

  function identity() { return { user_id: String(config.user.id), user_hash: config.user.hash }; }

  /* Release notes by email, for a user whose address the host gives: user.email, signed by
     user.email_hash for one-click subscription (else a confirmation link is mailed), or an
     unsigned attributes.email as hosts gave it before. */
  function mailAddress() {
    var user = config.user || {};
    return user.email || (user.attributes && user.attributes.email) || null;
  }

  function canMail() { return !anonymous() && Boolean(mailAddress()); }

  function mailIdentity() {
    var body = identity();
    body.email = String(mailAddress());
    if (config.user.email_hash) body.email_hash = config.user.email_hash;
    return body;
  }

  function loadMail() {
    if (!canMail() || state.mail) return;
    state.mail = { status: "loading" };
    var body = mailIdentity();
    var query = new URLSearchParams();
    Object.keys(body).forEach(function (name) { if (body[name]) query.set(name, body[name]); });
    request(api("/subscription?" + query.toString())).then(guard(function (data) {
      state.mail = data;
      renderMail();
    })).catch(function (error) { state.mail = null; warn(error); });
  }

  function subscribe() {
    state.mail.status = "sending";
    renderMail();
    request(api("/subscription"), mailIdentity()).then(guard(function (data) {
      state.mail = data;
      renderMail();
    })).catch(function (error) { state.mail.status = null; renderMail(); warn(error); });
  }

  function renderMail() {
    var mail = state.mail;
    if (!ui.mail || !mail || mail.status === "loading") return;
    ui.mail.textContent = "";
    ui.mail.hidden = false;
    if (mail.status === "confirmed") {
      ui.mail.appendChild(el("span", { text: "Updates also go to " + mail.email + " by email." }));
    } else if (mail.status === "pending") {
      ui.mail.appendChild(el("span", { text: "Check " + mail.email + " for a link to confirm." }));
    } else {
      ui.mail.appendChild(el("span", { text: "Get these updates by email too." }));
      ui.mail.appendChild(el("button", {
        class: "btn", type: "button", text: mail.status === "sending" ? "Subscribing…" : "Email me",
        disabled: mail.status === "sending" ? "" : null, onclick: subscribe,
      }));
    }
  }

  function setUnread(count) {
    state.unread = Math.max(0, count);
    var label = state.unread ? String(state.unread > 99 ? "99+" : state.unread) : "";
    [ui.count, ui.badge].forEach(function (node) {
      if (!node) return;
      node.textContent = label;
      node.hidden = !state.unread;
    });
    var name = "What's new" + (state.unread ? ", " + state.unread + " unread" : "");
    if (ui.launcher) ui.launcher.setAttribute("aria-label", name);
    if (config.onUnreadCount) guard(config.onUnreadCount)(state.unread);
  }

  /* Drawing ------------------------------------------------------------- */

  function mount() {
    var host = document.createElement("tidings-widget");
    var shadow = host.attachShadow({ mode: "open" });
    style(shadow, CSS);
    ui.root = el("div", { class: "tw" });
    shadow.appendChild(ui.root);
    document.body.appendChild(host);
    ui.host = host;

    var target = config.selector ? document.querySelector(config.selector) : null;
    if (target) {
      ui.badge = attachBadge(target);
      target.addEventListener("click", guard(function (event) { event.preventDefault(); toggle(); }));
      ui.opener = target;
    } else {
      ui.count = el("span", { class: "count", hidden: "" });
      ui.launcher = el("button", { class: "launcher", type: "button", "aria-label": "What's new", "aria-haspopup": "dialog", onclick: toggle }, [ui.count]);
      ui.launcher.insertAdjacentHTML("afterbegin", BELL);
      ui.root.appendChild(ui.launcher);
      ui.opener = ui.launcher;
    }
    ui.root.addEventListener("keydown", guard(onKey));
  }

  /* A constructed stylesheet works under a host CSP that forbids inline styles. */
  function style(shadow, css) {
    if (shadow.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.appendChild(el("style", { text: css }));
    }
  }

  function attachBadge(target) {
    var holder = document.createElement("tidings-badge");
    var shadow = holder.attachShadow({ mode: "open" });
    var badge = el("span", { class: "count", hidden: "" });
    style(shadow, ":host{all:initial}.count{display:inline-block;margin-left:6px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#dc2626;color:#fff;font:700 12px/20px system-ui,sans-serif;text-align:center;vertical-align:middle}[hidden]{display:none}");
    shadow.appendChild(badge);
    target.appendChild(holder);
    target.setAttribute("aria-haspopup", "dialog");
    return badge;
  }

  function formatDate(iso) {
    try {
      return new Date(iso).toLocaleDateString((config.user && config.user.locale) || undefined, { year: "numeric", month: "short", day: "numeric" });
    } catch (error) {
      return iso.slice(0, 10);
    }
  }

  function noteBody(note) {
    /* The HTML was sanitised by the Tidings server; links open outside the host app. */
    var body = el("div", { class: "body" });
    body.innerHTML = note.html;
    Array.prototype.forEach.call(body.querySelectorAll("a"), function (link) {
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer nofollow");
    });
    return body;
  }

  function meta(note) {
    return el("div", { class: "meta" }, [
      note.read || note.quiet ? null : el("span", { class: "new", role: "img", "aria-label": "Unread" }),
      el("span", { class: "pill " + note.category, text: note.category_label }),
      el("span", { text: "v" + note.version.replace(/^v/, "") }),
      el("time", { datetime: note.published_at, text: formatDate(note.published_at) }),
    ]);
  }

  function noteItem(note) {
    var reactions = REACTIONS.map(function (pair) {
      return el("button", {
        class: "react", type: "button", "aria-pressed": String(note.reaction === pair[0]),
        "aria-label": pair[1], title: pair[1], text: pair[0],
        onclick: function () { react(note, pair[0]); note.commenting = note.reaction !== null; render(); },
      });
    });
    var foot = el("div", { class: "foot" }, reactions.concat([
      el("a", { class: "more", href: note.url, target: "_blank", rel: "noopener", text: "Permalink" }),
    ]));
    if (note.commenting && !anonymous()) {
      var box = el("textarea", { "aria-label": "Tell us more (optional)", maxlength: "1000", placeholder: "Tell us more (optional)" });
      foot.appendChild(el("form", { class: "comment", onsubmit: function (event) {
        event.preventDefault();
        note.commenting = false;
        react(note, note.reaction, box.value);
      } }, [box, el("button", { class: "btn", type: "submit", text: "Send" })]));
    }
    return el("article", { class: "note", "aria-labelledby": "t" + note.id }, [
      meta(note), el("h3", { id: "t" + note.id, text: note.title }), noteBody(note), foot,
    ]);
  }

  function render() {
    if (state.product && state.product.accent_color) ui.root.style.setProperty("--accent", state.product.accent_color);
    if (!state.open) return;
    var list = ui.list;
    var scroll = list.scrollTop;
    list.textContent = "";
    if (!state.notes.length) list.appendChild(el("p", { class: "empty", text: "Nothing new yet. Updates will show up here." }));
    state.notes.forEach(function (note) { list.appendChild(noteItem(note)); });
    if (state.cursor) list.appendChild(el("button", { class: "load", type: "button", text: "Show older updates", onclick: loadMore }));
    list.scrollTop = scroll;
  }

  function loadMore() {
    var before = state.notes.length;
    load(state.cursor).then(function () { markRead(state.notes.slice(before)); }).catch(warn);
  }

  function open() {
    if (state.open || !ui.root) return;
    state.open = true;
    state.lastFocus = document.activeElement;
    var title = el("h2", { id: "tw-title" }, [
      el("small", { text: state.product ? state.product.name : "" }),
      document.createTextNode("What's new"),
    ]);
    ui.list = el("div", { class: "list" });
    ui.mail = el("div", { class: "mail", "aria-live": "polite", hidden: "" });
    ui.panel = el("section", { class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "tw-title", tabindex: "-1" }, [
      el("div", { class: "head" }, [title, el("button", { class: "x", type: "button", "aria-label": "Close", text: "×", onclick: close })]),
      ui.list,
      ui.mail,
    ]);
    ui.root.appendChild(ui.panel);
    if (ui.opener) ui.opener.setAttribute("aria-expanded", "true");
    render();
    renderMail();
    loadMail();
    ui.panel.focus();
    markRead(state.notes);
    if (config.onOpen) guard(config.onOpen)();
  }

  function close() {
    if (!state.open) return;
    state.open = false;
    ui.panel.remove();
    if (ui.opener) ui.opener.setAttribute("aria-expanded", "false");
    restoreFocus();
    if (config.onClose) guard(config.onClose)();
  }

  function restoreFocus() {
    var back = state.lastFocus && document.contains(state.lastFocus) ? state.lastFocus : ui.opener;
    if (back && back.focus) back.focus();
  }

  function toggle() { if (state.open) close(); else open(); }

  /* An important note the user has not read opens once, as a modal. */
  function popImportant() {
    if (ui.modal) return;
    var note = state.notes.filter(function (n) { return n.important && !n.read && !n.quiet; })[0];
    if (!note) return;
    markRead([note]);
    state.lastFocus = document.activeElement;
    var done = el("button", { class: "btn", type: "button", text: "Got it", onclick: closeModal });
    var dialog = el("div", { class: "modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "tw-modal-title" }, [
      meta(note),
      el("h2", { id: "tw-modal-title", text: note.title }),
      noteBody(note),
      el("div", { class: "actions" }, [
        el("a", { class: "more", href: note.url, target: "_blank", rel: "noopener", text: "Permalink" }),
        done,
      ]),
    ]);
    ui.modal = el("div", { class: "veil", onclick: function (event) { if (event.target === ui.modal) closeModal(); } }, [dialog]);
    ui.root.appendChild(ui.modal);
    done.focus();
  }

  function closeModal() {
    if (!ui.modal) return;
    ui.modal.remove();
    ui.modal = null;
    restoreFocus();
  }

  function focusables(container) {
    return Array.prototype.filter.call(
      container.querySelectorAll("a[href],button,textarea,[tabindex]:not([tabindex='-1'])"),
      function (node) { return !node.disabled; }
    );
  }

  function onKey(event) {
    if (event.key === "Escape") {
      if (ui.modal) closeModal(); else close();
      return;
    }
    if (event.key !== "Tab" || !ui.modal) return;
    /* Focus stays inside the modal until it is closed. */
    var items = focusables(ui.modal);
    var active = ui.host.shadowRoot.activeElement;
    var first = items[0];
    var last = items[items.length - 1];
    if (event.shiftKey && (active === first || items.indexOf(active) === -1)) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && (active === last || items.indexOf(active) === -1)) { event.preventDefault(); first.focus(); }
  }

  function refresh() {
    return load().catch(warn);
  }

  function init(options) {
    if (config) return;
    if (!options || !options.product) throw new Error("Tidings.init needs {product: '<widget key>'}");
    config = options;
    var start = guard(function () {
      mount();
      refresh();
      setInterval(guard(function () { if (!document.hidden && !state.open) refresh(); }), REFRESH_MS);
    });
    if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
  }

  window.Tidings = {
    version: "1",
    init: guard(init),
    open: guard(open),
    close: guard(close),
    refresh: guard(refresh),
    unreadCount: function () { return state.unread; },
  };
  if (window.tidings && typeof window.tidings === "object") window.Tidings.init(window.tidings);
})();
