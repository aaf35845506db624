/* The demo host reads the widget's settings from a JSON block and starts it: no inline script.
   Its "Contact support" form does what a real host's would: ask Tidings.beforeSupport first,
   and open a ticket only when the user still needs help. */
(function () {
  "use strict";
  var block = document.getElementById("tidings-config");
  if (block && window.Tidings) window.Tidings.init(JSON.parse(block.textContent));

  var opener = document.getElementById("contact-support");
  var panel = document.getElementById("support-form");
  var form = document.getElementById("support-ask");
  var field = document.getElementById("support-query");
  var result = document.getElementById("support-result");
  if (!opener || !panel || !form) return;

  function show(open) {
    panel.hidden = !open;
    opener.setAttribute("aria-expanded", String(open));
    if (open) { result.hidden = true; field.focus(); } else { opener.focus(); }
  }

  function outcome(answer) {
    if (answer.answered) return "Glad that helped: no ticket was opened.";
    if (answer.shown) return "Still need help: the host opens its ticket form now (nothing is sent in this demo).";
    return "No unread note matched: the host opens its ticket form straight away (nothing is sent in this demo).";
  }

  opener.addEventListener("click", function () { show(panel.hidden); });
  document.getElementById("support-cancel").addEventListener("click", function () { show(false); });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var query = field.value.trim();
    if (!query) { field.focus(); return; }
    var send = form.querySelector(".send");
    send.disabled = true;
    window.Tidings.beforeSupport({ query: query }).then(function (answer) {
      send.disabled = false;
      document.getElementById("support-outcome").textContent = outcome(answer);
      document.getElementById("support-value").textContent = JSON.stringify(answer);
      result.hidden = false;
    });
  });
})();
