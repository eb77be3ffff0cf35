// memvault dashboard: progressive enhancement only; every page works without this file.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  field.select();
  if (navigator.clipboard) {
    navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; });
  }
});
function syncErase() {
  document.querySelectorAll("[data-must-equal]").forEach(function (input) {
    var button = input.form.querySelector("[data-erase]");
    if (button) button.disabled = input.value !== input.getAttribute("data-must-equal");
  });
}
document.addEventListener("input", syncErase);
document.addEventListener("DOMContentLoaded", syncErase);
