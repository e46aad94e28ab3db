// Warden console: a little progressive enhancement, nothing required to use it.
// - A form's buttons are disabled once it is sent, so a decision is not sent twice.
// - <time> elements get the browser's local time as a tooltip.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function () {
      setTimeout(function () {
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
  document.querySelectorAll("time").forEach(function (t) {
    var d = new Date(t.textContent.replace(" UTC", "Z").replace(" ", "T"));
    if (!isNaN(d.getTime())) { t.title = d.toLocaleString(); }
  });
});
