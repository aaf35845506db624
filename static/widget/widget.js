/*
 * Tidings widget: what's new, inside your product.
 *
 * Load it with <script src="https://tidings.example/widget.js" defer></script> after
 * setting window.tidings = {product, user: {id, hash, email, email_hash, version, locale,
 * attributes}},
 * or call Tidings.init({...}) yourself. It draws inside a Shadow DOM, talks only to
 * the Tidings server it was loaded from, and never throws into the host page.
 *
 * Send as attributes only what the notes' audience rules use (plan, role, team...):
 * Tidings keeps them as sent until the user is erased or not seen for the product's
 * retention period. Leave out e-mails and names unless a note's audience needs them; an
 * address for release notes by e-mail goes in user.email, signed by user.email_hash,
 * and is kept on the user only as a keyed hash.
 *
 * Before opening its support form a host may call Tidings.beforeSupport({query}): the
 * user's unread notes that match are shown first, and the promise resolves to
 * {shown, answered} (it never rejects), so the host knows whether to open its form.
 *
 * It speaks user.locale, else the browser's language: each note comes in its best
 * translation (the server picks it), and the widget's own wording, fetched once per
 * language from /api/v1/widget/strings/<locale>.json (English is built in), lays the
 * panel out right to left for Arabic, Hebrew, Persian...; dates are the browser's Intl.
 *
 * It hears of a change as it happens: the notes answer names the product's event stream
 * (events), and each "catalogue" event there refreshes the notes, so the badge moves and
 * an important note pops up without a reload. Where the stream cannot be opened it polls.
 */
(function () {
  "use strict";
  if (window.Tidings && window.Tidings.version) return;

  var SCRIPT = document.currentScript;
  var DEFAULT_BASE = SCRIPT && SCRIPT.src ? new URL(SCRIPT.src, location.href).origin : "";
  var REFRESH_MS = 5 * 60 * 1000;
  /* With the event stream open the catalogue's changes arrive as they happen; the slower
     poll is for what the stream does not carry (a note an agent sends one user). */
  var LIVE_REFRESH_MS = 30 * 60 * 1000;
  /* Errors in a row without the stream opening, after which it is closed: the widget polls,
     and tries the stream again at its next successful refresh. */
  var LIVE_TRIES = 3;
  var PAGE = 20;
  var REACTIONS = ["👍", "👎", "😕"];
  /* The wording in English, by the keys of app/widget_strings.py; another language comes
     from the server (loadWording) and falls back on these key by key. */
  var ENGLISH = {
    locale: "en",
    dir: "ltr",
    strings: {
      whats_new: "What's new", unread: "Unread", close: "Close",
      empty: "Nothing new yet. Updates will show up here.", older: "Show older updates",
      version: "v%(version)s", permalink: "Permalink",
      "reaction.👍": "Helpful", "reaction.👎": "Not helpful", "reaction.😕": "Confusing",
      tell_more: "Tell us more (optional)", send: "Send",
      from_support: "From support", needs_confirmation: "Needs your confirmation",
      understand: "I understand", confirmed: "Confirmed", read_and_confirm: "Please read and confirm",
      close_unconfirmed: "Close without confirming", shown_again: "We'll show this again until you confirm it.",
      sent_by_support: "Sent to you by our support team", important: "Important update", got_it: "Got it",
      help: "Help", before_contact: "Before you contact us", answers: "This answers my question",
      still_need_help: "I still need help", not_looking_for: "Not what you were looking for?",
      mail_confirmed: "Updates also go to %(email)s by email.", mail_pending: "Check %(email)s for a link to confirm.",
      mail_offer: "Get these updates by email too.", email_me: "Email me", subscribing: "Subscribing…",
      "category.Added": "New", "category.Changed": "Improved", "category.Deprecated": "Deprecated",
      "category.Removed": "Removed", "category.Fixed": "Fixed", "category.Security": "Security",
    },
    plurals: {
      whats_new_unread: { one: "What's new, %(num)d unread", other: "What's new, %(num)d unread" },
      may_answer: { one: "This recent update may already answer your question.", other: "These recent updates may already answer your question." },
    },
  };
  /* What the API takes as a language tag; anything else the browser says is left out. */
  var TAG = /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;
  var RTL = /^(ar|arc|ckb|dv|fa|he|iw|ks|ps|sd|ug|ur|yi)(-|$)/;
  var WEEK_MS = 7 * 24 * 3600 * 1000;
  var CSS = [
    ".tw{all:initial;font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#111827;--accent:#4f46e5}",
    ".tw *{box-sizing:border-box;font:inherit;color:inherit}",
    ".tw button{cursor:pointer;border:0;background:none;margin:0;padding:0}",
    ".tw :focus-visible{outline:3px solid color-mix(in srgb,var(--accent) 50%,transparent);outline-offset:2px}",
    ".launcher{position:fixed;inset-inline-end:20px;bottom:20px;z-index:2147483647;width:52px;height:52px;border-radius:50%;background:var(--accent)!important;color:#fff;display:flex;align-items:center;justify-content:center;box-shadow:0 6px 20px rgb(17 24 39/25%)}",
    ".launcher svg{width:24px;height:24px;fill:none;stroke:#fff;stroke-width:2}",
    ".count{position:absolute;top:-4px;inset-inline-end:-4px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#dc2626;color:#fff!important;font-size:12px;font-weight:700;line-height:22px;text-align:center;border:2px solid #fff}",
    ".count[hidden],[hidden]{display:none!important}",
    ".panel{position:fixed;top:0;inset-inline-end:0;bottom:0;z-index:2147483647;width:400px;max-width:100vw;background:#fff;box-shadow:-8px 0 30px rgb(17 24 39/18%);display:flex;flex-direction:column}",
    ".tw[dir=rtl] .panel{box-shadow:8px 0 30px rgb(17 24 39/18%)}",
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
    ".body ul,.body ol{padding-inline-start:20px}",
    ".body a,.more{color:var(--accent)!important;text-decoration:underline}",
    ".body img{max-width:100%;height:auto;border-radius:6px}",
    ".body code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;background:#f3f4f6;padding:1px 4px;border-radius:4px}",
    ".body pre{background:#f3f4f6;padding:8px;border-radius:6px;overflow-x:auto}.body pre code{padding:0}",
    /* Code reads left to right even in an Arabic note, and keeps its own order within a line. */
    ".body pre,.body code{direction:ltr;text-align:left;unicode-bidi:isolate}",
    /* A wide table scrolls sideways; its cells break between words, never inside one. */
    ".body table{border-collapse:collapse;display:block;overflow-x:auto}.body th,.body td{border:1px solid #e5e7eb;padding:4px 8px;overflow-wrap:normal}",
    ".body blockquote{border-inline-start:3px solid #e5e7eb;padding-inline-start:10px;color:#6b7280}",
    ".foot{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin-top:8px}",
    ".react{padding:3px 9px!important;border:1px solid #e5e7eb!important;border-radius:999px;font-size:14px}",
    ".react[aria-pressed=true]{border-color:var(--accent)!important;background:#eef2ff!important}",
    ".more{margin-inline-start:auto;font-size:12px}",
    ".comment{display:flex;gap:6px;width:100%;margin-top:6px}",
    ".comment textarea{flex:1;min-height:38px;resize:vertical;border:1px solid #d1d5db;border-radius:8px;padding:6px 8px}",
    ".btn{padding:7px 14px!important;border-radius:8px;background:var(--accent)!important;color:#fff!important;font-weight:600}",
    ".load{display:block;margin:14px auto 0;padding:8px 14px!important;border:1px solid #d1d5db!important;border-radius:8px}",
    ".empty{padding:40px 10px;text-align:center;color:#6b7280}",
    ".mail{display:flex;align-items:center;justify-content:space-between;gap:10px;padding:10px 16px;border-top:1px solid #e5e7eb;font-size:13px;color:#6b7280}",
    ".mail span{min-width:0;overflow-wrap:anywhere}.mail[hidden]{display:none}",
    /* A button's words stay on one line; the text beside it wraps instead. */
    ".mail .btn,.tw .mfoot .primary{flex:none;white-space:nowrap}",
    ".tag{font-size:11px;font-weight:600;padding:2px 8px;border-radius:999px;background:#f3f4f6;color:#374151}",
    ".tag.warn{background:#fef3c7;color:#92400e}",
    ".tw .ack{margin-inline-start:0;padding:5px 12px;border-radius:8px;background:#fef3c7;color:#92400e;font-size:13px;font-weight:600}",
    ".acked{font-size:13px;font-weight:600;color:#047857}",
    /* Modals: a notice to confirm, a note from support, an important note, help before a ticket. */
    ".veil{position:fixed;inset:0;z-index:2147483647;background:rgb(15 23 42/55%);-webkit-backdrop-filter:blur(3px);backdrop-filter:blur(3px);display:flex;align-items:center;justify-content:center;padding:24px;animation:tw-fade .18s ease-out}",
    ".modal{position:relative;background:#fff;border-radius:16px;max-width:540px;width:100%;max-height:min(86vh,760px);display:flex;flex-direction:column;box-shadow:0 24px 64px rgb(15 23 42/35%),0 0 0 1px rgb(15 23 42/6%);animation:tw-rise .22s cubic-bezier(.2,.8,.2,1)}",
    ".modal:focus{outline:none}",
    ".modal.help{max-width:600px}",
    ".mhead{display:flex;align-items:flex-start;gap:14px;padding-block:22px 0;padding-inline:24px 22px}",
    ".mtitle{flex:1;min-width:0}",
    ".eyebrow{margin:0 0 2px;font-size:12px;font-weight:600;letter-spacing:.05em;text-transform:uppercase;color:#6b7280}",
    ".modal h2{margin:0;font-size:19px;font-weight:700;line-height:1.3;overflow-wrap:anywhere}",
    ".lead{margin:4px 0 0;color:#4b5563}",
    ".icon{flex:none;width:42px;height:42px;border-radius:12px;display:flex;align-items:center;justify-content:center;background:color-mix(in srgb,var(--accent) 12%,#fff);color:var(--accent)}",
    ".icon svg{width:22px;height:22px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}",
    ".notice .icon{background:#fef3c7;color:#b45309}.notice .tag.warn{display:none}",
    ".mhead .x{flex:none;margin-block:-4px 0;margin-inline:0 -6px}",
    ".mbody{padding:14px 24px 6px;overflow-y:auto;overscroll-behavior:contain}",
    ".mbody>.meta{margin-bottom:10px}",
    ".mfoot{display:flex;align-items:center;justify-content:flex-end;gap:10px;padding:14px 24px 20px;margin-top:8px;border-top:1px solid #f0f1f4}",
    ".mfoot .hint{margin-block:0;margin-inline:0 auto;font-size:12.5px;color:#6b7280}",
    ".tw .primary{padding:10px 20px;border-radius:10px;background:var(--accent);color:#fff;font-weight:600;box-shadow:0 1px 2px rgb(15 23 42/15%)}",
    ".tw .primary:hover{filter:brightness(1.08)}",
    ".tw .secondary{padding:9px 18px;border:1px solid #d1d5db;border-radius:10px;background:#fff;color:#1f2937;font-weight:600}",
    ".tw .secondary:hover{background:#f9fafb;border-color:#9ca3af}",
    ".hnote{padding:14px 16px;margin:0 0 12px;border:1px solid #e5e7eb;border-radius:12px;background:#fcfcfd}",
    ".hnote h3{margin:6px 0 4px;font-size:15px;font-weight:700;line-height:1.35}",
    /* Arabic script stacks marks above and below its letters: a tight heading's lines touch. */
    ".tw h2:lang(ar),.tw h3:lang(ar),.tw h2:lang(fa),.tw h3:lang(fa),.tw h2:lang(ur),.tw h3:lang(ur){line-height:1.6}",
    ".tw .answer{display:inline-flex;align-items:center;gap:6px;margin-top:4px;padding:7px 14px;border-radius:9px;background:color-mix(in srgb,var(--accent) 10%,#fff);color:var(--accent);font-weight:600;font-size:13.5px}",
    ".tw .answer:hover{background:color-mix(in srgb,var(--accent) 18%,#fff)}",
    ".answer svg{width:16px;height:16px;fill:none;stroke:currentColor;stroke-width:2.4;stroke-linecap:round;stroke-linejoin:round}",
    "@keyframes tw-fade{from{opacity:0}}",
    "@keyframes tw-rise{from{opacity:0;transform:translateY(12px) scale(.98)}}",
    "@media (prefers-reduced-motion:reduce){.veil,.modal{animation:none}}",
    "@media (max-width:480px){.panel{width:100vw}.launcher{inset-inline-end:14px;bottom:14px}",
    /* On a phone a modal is a sheet from the bottom, its buttons full width within thumb's reach. */
    ".veil{align-items:flex-end;padding:0}.modal{max-width:none;max-height:92vh;border-radius:18px 18px 0 0}",
    ".mhead{padding-block:20px 0;padding-inline:18px 16px}.mbody{padding:12px 18px 4px}",
    ".mfoot{flex-direction:column;align-items:stretch;padding:12px 18px max(18px,env(safe-area-inset-bottom))}.mfoot .hint{margin:0;text-align:center}",
    ".tw .mfoot .primary,.tw .mfoot .secondary{width:100%;padding:12px 18px}.mfoot .more{margin:0;text-align:center}",
    "@keyframes tw-rise{from{transform:translateY(40px)}}}",
  ].join("");
  var BELL = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9"/><path d="M10.3 21a1.9 1.9 0 0 0 3.4 0"/></svg>';
  var ICONS = {
    notice: '<path d="M12 3l8 3v6c0 4.6-3.4 8.3-8 9-4.6-.7-8-4.4-8-9V6z"/><path d="M12 8.5v4.5M12 16.2v.3"/>',
    pinned: '<path d="M20.5 12a8.5 8.5 0 0 1-12.3 7.6L3.5 21l1.4-4.6A8.5 8.5 0 1 1 20.5 12z"/><path d="M8.5 12h.01M12 12h.01M15.5 12h.01"/>',
    important: '<path d="M4 10.5v3a1 1 0 0 0 1 1h2.5L13 19V5L7.5 9.5H5a1 1 0 0 0-1 1z"/><path d="M16.5 9a4.5 4.5 0 0 1 0 6M19 6.5a8 8 0 0 1 0 11"/>',
    help: '<circle cx="12" cy="12" r="9"/><circle cx="12" cy="12" r="3.8"/><path d="M5.6 5.6l3.7 3.7M14.7 14.7l3.7 3.7M18.4 5.6l-3.7 3.7M9.3 14.7l-3.7 3.7"/>',
    check: '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
  };

  var config = null;
  /* declined: a notice was closed without "I understand" in this page view; it returns
     on the next page view, not at the next refresh, and nothing else pops up until then. */
  var state = { notes: [], unread: 0, cursor: null, product: null, open: false, lastFocus: null, mail: null, addressSent: false, declined: false };
  /* The event stream (one per widget), its errors since it last opened, whether a change
     waits for the page to be seen or the panel to close, and when the notes were loaded. */
  var live = { source: null, errors: 0, stale: false, loadedAt: 0 };
  /* The reader's language tag, the widget's wording (ENGLISH until another language's
     arrives) and the promise of it, and the date formats for the language. */
  var speech = { tag: null, wording: ENGLISH, loading: null, dates: null, relative: null, plural: null };
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

  /* Anonymous users: what they read ("read") and the notices they confirmed
     ("acknowledged") live in this browser only. */
  function storageKey(kind) { return "tidings:" + config.product + ":" + kind; }

  /* The ids kept under kind; null when nothing was ever kept (a first visit). */
  function storedIds(kind) {
    try {
      var raw = localStorage.getItem(storageKey(kind));
      return raw === null ? null : JSON.parse(raw);
    } catch (error) {
      return [];
    }
  }

  function saveIds(kind, ids) {
    try { localStorage.setItem(storageKey(kind), JSON.stringify(ids.slice(-500))); } catch (error) { warn(error); }
  }

  function anonymous() { return !(config.user && config.user.id); }

  function api(path) { return (config.apiBase || DEFAULT_BASE) + "/api/v1/widget/" + encodeURIComponent(config.product) + path; }

  /* Sets who is asking and in what language on query: the event stream reads these. */
  function readerQuery(query) {
    var user = config.user || {};
    if (user.id) { query.set("user_id", String(user.id)); query.set("user_hash", user.hash || ""); }
    if (speech.tag) query.set("locale", speech.tag);
    return query;
  }

  /* The query string that says who is asking: the notes and the help endpoints read the
     same identity, version, locale and attributes. */
  function userQuery(fields) {
    var user = config.user || {};
    var query = readerQuery(new URLSearchParams(fields));
    if (user.version) query.set("version", user.version);
    Object.keys(user.attributes || {}).forEach(function (name) {
      var value = user.attributes[name];
      if (value !== null && value !== undefined) query.set("attr." + name, String(value));
    });
    return query;
  }

  function notesUrl(cursor) {
    var query = userQuery({ limit: String(PAGE) });
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
    return Promise.all([request(notesUrl(cursor)), speech.loading]).then(guard(function (answers) {
      var data = answers[0];
      state.product = data.product;
      if (anonymous()) applyLocalReads(data);
      state.notes = cursor ? state.notes.concat(data.notes) : data.notes;
      state.cursor = data.next_cursor;
      setUnread(data.unread_count);
      render();
      if (!cursor) {
        live.loadedAt = Date.now();
        popNext();
        listen(data.events);
      }
      sendAddress();
    }));
  }

  /* Live updates --------------------------------------------------------- */

  /* Opens the product's event stream, unless one is open or opening; a "catalogue" event
     says what end users see changed, and nothing about the user. */
  function listen(events) {
    if (live.source || !events || !window.EventSource) return;
    var url = new URL(events, config.apiBase || DEFAULT_BASE);
    readerQuery(url.searchParams);
    var source = new EventSource(url.toString());
    live.source = source;
    live.errors = 0;
    source.addEventListener("open", function () { live.errors = 0; });
    source.addEventListener("catalogue", guard(function () {
      live.stale = true;
      catchUp();
    }));
    /* The browser reconnects by itself, sending the last event's id, after a dropped
       connection; it gives up (CLOSED) on an answer that is not a stream (401, 404). */
    source.addEventListener("error", guard(function () {
      live.errors += 1;
      if (source.readyState !== EventSource.CLOSED && live.errors < LIVE_TRIES) return;
      source.close();
      live.source = null;
    }));
  }

  /* Refreshes after a change, once the page is seen and the panel closed: a refresh
     replaces the list the user may be reading, and a hidden page need not ask. */
  function catchUp() {
    if (!live.stale || document.hidden || state.open) return;
    live.stale = false;
    refresh();
  }

  function streaming() { return Boolean(live.source && live.source.readyState === EventSource.OPEN); }

  function poll() {
    if (document.hidden || state.open) return;
    if (streaming() && Date.now() - live.loadedAt < LIVE_REFRESH_MS) return;
    refresh();
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
    var read = storedIds("read");
    if (read === null) {
      /* First visit: only the newest release starts unread, as for identified users. */
      var newest = data.notes.length ? data.notes[0].version : null;
      read = data.notes.filter(function (n) { return n.version !== newest; }).map(function (n) { return n.id; });
      saveIds("read", read);
    }
    var acknowledged = storedIds("acknowledged") || [];
    data.notes.forEach(function (note) {
      if (read.indexOf(note.id) !== -1 && !note.read) { note.read = true; data.unread_count -= 1; }
      if (acknowledged.indexOf(note.id) !== -1) note.acknowledged = true;
    });
    data.unread_count = Math.max(0, data.unread_count);
  }

  /* A quiet note is held back from this user for a while (a hold-back experiment): it is
     listed, and reading it is recorded, but it was never in the count and never pops up.
     channel is "popup" for a note shown as a modal; the server records the read of a note
     an agent sent as theirs whatever the widget says. */
  function markRead(notes, channel) {
    var fresh = seen(notes);
    if (!fresh.length || anonymous()) return;
    var body = identity();
    body.note_ids = fresh.map(function (note) { return note.id; });
    if (channel) body.channel = channel;
    request(api("/reads"), body).catch(warn);
  }

  /* Counts notes read here and returns the ones that were not; an anonymous user's reads
     are kept in this browser, an identified user's are for the caller to send. */
  function seen(notes) {
    var fresh = notes.filter(function (note) { return !note.read; });
    fresh.forEach(function (note) { note.read = true; note.pinned = false; });
    setUnread(state.unread - fresh.filter(function (note) { return !note.quiet; }).length);
    if (fresh.length && anonymous()) {
      saveIds("read", (storedIds("read") || []).concat(fresh.map(function (note) { return note.id; })));
    }
    return fresh;
  }

  /* "I understand": kept apart from the read, which showing the notice recorded. */
  function acknowledge(note) {
    note.acknowledged = true;
    seen([note]);
    if (anonymous()) {
      saveIds("acknowledged", (storedIds("acknowledged") || []).concat([note.id]));
      return;
    }
    var body = identity();
    body.note_id = note.id;
    request(api("/acknowledgements"), body).catch(warn);
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

  /* The help endpoints take anonymous users too, where the product allows them. */
  function identityIfKnown() { return anonymous() ? {} : identity(); }

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
      ui.mail.appendChild(el("span", { text: t("mail_confirmed", { email: mail.email }) }));
    } else if (mail.status === "pending") {
      ui.mail.appendChild(el("span", { text: t("mail_pending", { email: mail.email }) }));
    } else {
      ui.mail.appendChild(el("span", { text: t("mail_offer") }));
      ui.mail.appendChild(el("button", {
        class: "btn", type: "button", text: t(mail.status === "sending" ? "subscribing" : "email_me"),
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
    var name = state.unread ? tn("whats_new_unread", state.unread) : t("whats_new");
    if (ui.launcher) ui.launcher.setAttribute("aria-label", name);
    if (config.onUnreadCount) guard(config.onUnreadCount)(state.unread);
  }

  /* Language ------------------------------------------------------------- */

  /* The tag the reader reads: the host's user.locale, else the browser's language; a tag
     the API would refuse ("fr_FR", say) is mended or left out, so the widget still works. */
  function readerTag() {
    var given = (config.user && config.user.locale) || navigator.language || "";
    var parts = String(given).replace(/_/g, "-").split("-");
    parts[0] = parts[0].toLowerCase();
    var tag = parts.join("-");
    return TAG.test(tag) ? tag : null;
  }

  /* The wording in the reader's language: built in for English, else fetched once (the
     browser keeps it for a day); on failure, English. Never rejects. */
  function loadWording() {
    if (!speech.tag || speech.tag.split("-")[0] === "en") return Promise.resolve(speak(ENGLISH));
    var url = (config.apiBase || DEFAULT_BASE) + "/api/v1/widget/strings/" + encodeURIComponent(speech.tag) + ".json";
    return fetch(url, { credentials: "omit", mode: "cors" }).then(function (response) {
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      return response.json();
    }).then(guard(speak)).catch(function (error) { warn(error); speak(ENGLISH); });
  }

  /* Speak ``wording``: its direction on the widget, dates in its language (in the reader's
     own variant of it, fr-CA say, when that is the language). */
  function speak(wording) {
    speech.wording = wording;
    var dateTag = speech.tag && speech.tag.split("-")[0] === wording.locale ? speech.tag : wording.locale;
    try {
      speech.dates = new Intl.DateTimeFormat(dateTag, { year: "numeric", month: "short", day: "numeric" });
      speech.relative = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(dateTag, { numeric: "auto" }) : null;
      speech.plural = new Intl.PluralRules(wording.locale);
    } catch (error) {
      speech.dates = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
      speech.relative = null;
      speech.plural = null;
    }
    if (ui.root) {
      ui.root.setAttribute("lang", wording.locale);
      ui.root.setAttribute("dir", wording.dir === "rtl" ? "rtl" : "ltr");
    }
    return wording;
  }

  /* The message ``key`` with its %(name)s placeholders filled; English if the language
     lacks it, else ``fallback``. */
  function t(key, values, fallback) {
    var text = speech.wording.strings[key] || ENGLISH.strings[key] || fallback || key;
    return fill(text, values);
  }

  /* The message ``key`` for the number ``count``, in the language's plural form for it. */
  function tn(key, count) {
    var forms = speech.wording.plurals[key] || ENGLISH.plurals[key];
    var category = speech.plural ? speech.plural.select(count) : "other";
    var text = forms[category] || forms.other || ENGLISH.plurals[key].other;
    return fill(text, { num: count });
  }

  function fill(text, values) {
    return text.replace(/%\((\w+)\)[sd]/g, function (whole, name) {
      return values && values[name] !== undefined ? String(values[name]) : whole;
    });
  }

  /* Drawing ------------------------------------------------------------- */

  function mount() {
    var host = document.createElement("tidings-widget");
    var shadow = host.attachShadow({ mode: "open" });
    style(shadow, CSS);
    ui.root = el("div", { class: "tw", lang: speech.wording.locale, dir: speech.wording.dir });
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
      ui.launcher = el("button", { class: "launcher", type: "button", "aria-label": t("whats_new"), "aria-haspopup": "dialog", onclick: toggle }, [ui.count]);
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
    style(shadow, ":host{all:initial}.count{display:inline-block;margin-inline-start:6px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#dc2626;color:#fff;font:700 12px/20px system-ui,sans-serif;text-align:center;vertical-align:middle}[hidden]{display:none}");
    shadow.appendChild(badge);
    target.appendChild(holder);
    target.setAttribute("aria-haspopup", "dialog");
    return badge;
  }

  /* A date within the last week reads as "3 days ago", an older one as a date, both as
     the reader's language writes them; the exact date is the element's title. */
  function formatDate(iso) {
    try {
      var date = new Date(iso);
      var absolute = speech.dates.format(date);
      var ago = Date.now() - date.getTime();
      if (ago < 0 || ago >= WEEK_MS || !speech.relative) return [absolute, absolute];
      var days = Math.floor(ago / 86400000);
      var hours = Math.floor(ago / 3600000);
      var text = days ? speech.relative.format(-days, "day")
        : hours ? speech.relative.format(-hours, "hour")
        : speech.relative.format(-Math.floor(ago / 60000), "minute");
      return [text, absolute];
    } catch (error) {
      return [iso.slice(0, 10), iso.slice(0, 10)];
    }
  }

  /* The note's own language on the elements that hold its text: a note may be in another
     language than the widget's wording (a translation missing: the default text). */
  function noteLanguage(note) {
    return note.locale ? { lang: note.locale, dir: directionOf(note.locale) } : {};
  }

  function directionOf(tag) {
    try {
      var locale = new Intl.Locale(tag);
      var info = locale.getTextInfo ? locale.getTextInfo() : locale.textInfo;
      if (info && info.direction) return info.direction;
    } catch (error) { /* an older browser: the list below */ }
    return RTL.test(tag) ? "rtl" : "ltr";
  }

  function withLanguage(attrs, note) {
    var language = noteLanguage(note);
    Object.keys(language).forEach(function (name) { attrs[name] = language[name]; });
    return attrs;
  }

  function noteBody(note) {
    /* The HTML was sanitised by the Tidings server; links open outside the host app. */
    var body = el("div", withLanguage({ class: "body" }, note));
    body.innerHTML = note.html;
    Array.prototype.forEach.call(body.querySelectorAll("a"), function (link) {
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer nofollow");
    });
    return body;
  }

  function meta(note) {
    var when = formatDate(note.published_at);
    return el("div", { class: "meta" }, [
      note.read || note.quiet ? null : el("span", { class: "new", role: "img", "aria-label": t("unread") }),
      el("span", { class: "pill " + note.category, text: t("category." + note.category, null, note.category_label) }),
      el("bdi", { text: t("version", { version: note.version.replace(/^v/, "") }) }),
      el("time", { datetime: note.published_at, title: when[1], text: when[0] }),
      note.pinned ? el("span", { class: "tag", text: t("from_support") }) : null,
      awaitsAcknowledgement(note) ? el("span", { class: "tag warn", text: t("needs_confirmation") }) : null,
    ]);
  }

  function awaitsAcknowledgement(note) { return Boolean(note.requires_acknowledgement && !note.acknowledged); }

  function noteItem(note) {
    var reactions = REACTIONS.map(function (emoji) {
      return el("button", {
        class: "react", type: "button", "aria-pressed": String(note.reaction === emoji),
        "aria-label": t("reaction." + emoji), title: t("reaction." + emoji), text: emoji,
        onclick: function () { react(note, emoji); note.commenting = note.reaction !== null; render(); },
      });
    });
    var confirm = null;
    if (awaitsAcknowledgement(note)) {
      confirm = el("button", { class: "ack", type: "button", text: t("understand"), onclick: function () { acknowledge(note); render(); } });
    } else if (note.requires_acknowledgement) {
      confirm = el("span", { class: "acked", text: "✓ " + t("confirmed") });
    }
    var foot = el("div", { class: "foot" }, [confirm].concat(reactions, [
      el("a", { class: "more", href: note.url, target: "_blank", rel: "noopener", text: t("permalink") }),
    ]));
    if (note.commenting && !anonymous()) {
      var box = el("textarea", { "aria-label": t("tell_more"), maxlength: "1000", placeholder: t("tell_more") });
      foot.appendChild(el("form", { class: "comment", onsubmit: function (event) {
        event.preventDefault();
        note.commenting = false;
        react(note, note.reaction, box.value);
      } }, [box, el("button", { class: "btn", type: "submit", text: t("send") })]));
    }
    return el("article", { class: "note", "aria-labelledby": "t" + note.id }, [
      meta(note), el("h3", withLanguage({ id: "t" + note.id, text: note.title }, note)), noteBody(note), foot,
    ]);
  }

  function render() {
    if (state.product && state.product.accent_color) ui.root.style.setProperty("--accent", state.product.accent_color);
    if (!state.open) return;
    var list = ui.list;
    var scroll = list.scrollTop;
    list.textContent = "";
    if (!state.notes.length) list.appendChild(el("p", { class: "empty", text: t("empty") }));
    state.notes.forEach(function (note) { list.appendChild(noteItem(note)); });
    if (state.cursor) list.appendChild(el("button", { class: "load", type: "button", text: t("older"), onclick: loadMore }));
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
      document.createTextNode(t("whats_new")),
    ]);
    ui.list = el("div", { class: "list" });
    ui.mail = el("div", { class: "mail", "aria-live": "polite", hidden: "" });
    ui.panel = el("section", { class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "tw-title", tabindex: "-1" }, [
      el("div", { class: "head" }, [title, el("button", { class: "x", type: "button", "aria-label": t("close"), text: "×", onclick: close })]),
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
    catchUp();
  }

  function restoreFocus() {
    var back = state.lastFocus && document.contains(state.lastFocus) ? state.lastFocus : ui.opener;
    if (back && back.focus) back.focus();
  }

  function toggle() { if (state.open) close(); else open(); }

  /* Modals ------------------------------------------------------------- */

  /* On a page view at most one modal is up, in this order: a notice the user must confirm
     (after "I understand", the next one), a note an agent sent them, an important note
     they have not read. */
  function popNext() {
    if (ui.modal || state.declined) return;
    var notice = first(awaitsAcknowledgement);
    if (notice) { showNotice(notice); return; }
    var pinned = first(function (n) { return n.pinned && !n.read; });
    if (pinned) { showPopup(pinned, "pinned", t("sent_by_support")); return; }
    var important = first(function (n) { return n.important && !n.read && !n.quiet; });
    if (important) showPopup(important, "important", t("important"));
  }

  function first(test) { return state.notes.filter(test)[0]; }

  function icon(kind) {
    var holder = el("span", { class: "icon", "aria-hidden": "true" });
    holder.insertAdjacentHTML("afterbegin", '<svg viewBox="0 0 24 24">' + ICONS[kind] + "</svg>");
    return holder;
  }

  /* A dialog: icon, eyebrow and title, a scrolling body, and a row of actions. */
  function dialog(options) {
    return el("div", {
      class: "modal " + options.kind, role: options.role || "dialog", "aria-modal": "true",
      "aria-labelledby": "tw-modal-title", "aria-describedby": "tw-modal-body", tabindex: "-1",
    }, [
      el("div", { class: "mhead" }, [
        icon(options.kind),
        el("div", { class: "mtitle" }, [
          el("p", { class: "eyebrow", text: options.eyebrow }),
          el("h2", withLanguage({ id: "tw-modal-title", text: options.title }, options.note || {})),
          options.lead ? el("p", { class: "lead", text: options.lead }) : null,
        ]),
        el("button", { class: "x", type: "button", "aria-label": options.closeLabel || t("close"), text: "×", onclick: function () { closeModal(); } }),
      ]),
      el("div", { class: "mbody", id: "tw-modal-body" }, options.body),
      el("div", { class: "mfoot" }, options.actions),
    ]);
  }

  /* Shows a dialog over the page; dismissed runs when it is closed without an answer
     (×, Escape, a click outside it). */
  function showModal(node, focus, dismissed) {
    closeModal();
    state.lastFocus = document.activeElement;
    ui.modal = el("div", { class: "veil", onclick: function (event) { if (event.target === ui.modal) closeModal(); } }, [node]);
    ui.dismissed = dismissed || null;
    ui.root.appendChild(ui.modal);
    (focus || node).focus();
  }

  /* answered: closed by the dialog's own answer, not dismissed. */
  function closeModal(answered) {
    if (!ui.modal) return;
    var dismissed = ui.dismissed;
    ui.modal.remove();
    ui.modal = null;
    ui.dismissed = null;
    restoreFocus();
    if (!answered && dismissed) dismissed();
  }

  /* A notice the user must confirm: closing it does not count, and it comes back on the
     next page view. Showing it records the read. */
  function showNotice(note) {
    markRead([note], "popup");
    var understood = el("button", { class: "primary", type: "button", text: t("understand"), onclick: function () {
      acknowledge(note);
      closeModal(true);
      render();
      popNext();
    } });
    showModal(dialog({
      kind: "notice", role: "alertdialog", eyebrow: t("read_and_confirm"), title: note.title, note: note,
      closeLabel: t("close_unconfirmed"),
      body: [meta(note), noteBody(note)],
      actions: [el("p", { class: "hint", text: t("shown_again") }), understood],
    }), understood, function () { state.declined = true; });
  }

  /* A note an agent sent this user, or an important note: it opens once, as a modal. */
  function showPopup(note, kind, eyebrow) {
    markRead([note], "popup");
    var done = el("button", { class: "primary", type: "button", text: t("got_it"), onclick: function () { closeModal(true); popNext(); } });
    showModal(dialog({
      kind: kind, eyebrow: eyebrow, title: note.title, note: note,
      body: [meta(note), noteBody(note)],
      actions: [el("a", { class: "more", href: note.url, target: "_blank", rel: "noopener", text: t("permalink") }), done],
    }), done);
  }

  /* Help before a ticket -------------------------------------------------- */

  /* The user is about to contact support about query: show their unread notes that match
     it. Resolves {shown, answered} once they choose or close; never rejects. */
  function beforeSupport(options) {
    return new Promise(function (resolve) {
      try {
        var query = options && typeof options.query === "string" ? options.query.trim().slice(0, 500) : "";
        if (!config || !ui.root || !query) { resolve(nothingShown()); return; }
        Promise.all([request(api("/help?" + userQuery({ q: query }).toString())), speech.loading]).then(function (answers) {
          var data = answers[0];
          var read = anonymous() ? storedIds("read") || [] : [];
          var notes = data.notes.filter(function (note) { return read.indexOf(note.id) === -1; });
          if (notes.length) showHelp(query, notes, resolve); else resolve(nothingShown());
        }).catch(function (error) { warn(error); resolve(nothingShown()); });
      } catch (error) {
        warn(error);
        resolve(nothingShown());
      }
    });
  }

  /* A new object each time: a host may keep or change what it was given. */
  function nothingShown() { return { shown: 0, answered: false }; }

  function showHelp(query, notes, resolve) {
    var decided = false;
    var body = identityIfKnown();
    body.query = query;
    body.note_ids = notes.map(function (note) { return note.id; });
    var recorded = null;

    function decide(outcome, note) {
      if (decided) return;
      decided = true;
      closeModal(true);
      resolve({ shown: notes.length, answered: outcome === "answered" });
      var answer = identityIfKnown();
      answer.outcome = outcome;
      if (note) {
        answer.note_id = note.id;
        helped(note);
      }
      recorded.then(function (created) {
        if (created) return request(api("/help/" + encodeURIComponent(created.id)), answer);
      }).catch(warn);
    }

    var items = notes.map(function (note) {
      var answers = el("button", { class: "answer", type: "button", "aria-describedby": "tw-help-" + note.id, onclick: function () { decide("answered", note); } });
      answers.insertAdjacentHTML("afterbegin", '<svg viewBox="0 0 24 24" aria-hidden="true">' + ICONS.check + "</svg>");
      answers.appendChild(document.createTextNode(t("answers")));
      return el("article", { class: "hnote", "aria-labelledby": "tw-help-" + note.id }, [
        meta(note), el("h3", withLanguage({ id: "tw-help-" + note.id, text: note.title }, note)), noteBody(note), answers,
      ]);
    });
    var stillNeed = el("button", { class: "secondary", type: "button", text: t("still_need_help"), onclick: function () { decide("needs_help"); } });
    var node = dialog({
      kind: "help", eyebrow: state.product ? state.product.name : t("help"), title: t("before_contact"),
      lead: tn("may_answer", notes.length),
      body: items,
      actions: [el("p", { class: "hint", text: t("not_looking_for") }), stillNeed],
    });
    showModal(node, node, function () {
      if (decided) return;
      decided = true;
      resolve({ shown: notes.length, answered: false });
    });
    /* Recorded once drawn; the answer waits for its id. */
    recorded = request(api("/help"), body).catch(function (error) { warn(error); return null; });
  }

  /* A note that answered the question is read: the server records it for an identified
     user (channel "help"); this browser keeps it for an anonymous one. */
  function helped(note) {
    var listed = first(function (n) { return n.id === note.id; });
    seen([listed || note]);
    render();
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
    speech.tag = readerTag();
    speak(ENGLISH);
    speech.loading = loadWording();
    var start = guard(function () {
      mount();
      refresh();
      setInterval(guard(poll), REFRESH_MS);
      document.addEventListener("visibilitychange", guard(catchUp));
    });
    if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
  }

  window.Tidings = {
    version: "1",
    init: guard(init),
    open: guard(open),
    close: guard(close),
    refresh: guard(refresh),
    /* Not guarded: it catches everything itself, and must always hand back a promise. */
    beforeSupport: beforeSupport,
    unreadCount: function () { return state.unread; },
  };
  if (window.tidings && typeof window.tidings === "object") window.Tidings.init(window.tidings);
})();
