/* The product's accent colour comes from a data attribute: the CSP allows no inline style. */
(function () {
  "use strict";
  var accent = document.body && document.body.getAttribute("data-accent");
  if (accent && /^#[0-9a-fA-F]{6}$/.test(accent)) document.body.style.setProperty("--accent", accent);
})();
