/* The demo host reads the widget's settings from a JSON block and starts it: no inline script. */
(function () {
  "use strict";
  var block = document.getElementById("tidings-config");
  if (block && window.Tidings) window.Tidings.init(JSON.parse(block.textContent));
})();
