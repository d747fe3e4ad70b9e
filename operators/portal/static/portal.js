/* The portal's own script (no build step): IME-safe forms and the live log's auto-scroll. */
(function () {
  "use strict";
  var composing = false;
  // A Korean (or any) IME commits a syllable with Enter: that Enter must not submit the form.
  document.addEventListener("compositionstart", function () { composing = true; }, true);
  document.addEventListener("compositionend", function () {
    // the Enter that ended the composition arrives right after compositionend in some browsers
    setTimeout(function () { composing = false; }, 0);
  }, true);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.isComposing || event.keyCode === 229 || composing)) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);
  document.addEventListener("submit", function (event) {
    if (composing) { event.preventDefault(); event.stopPropagation(); }
  }, true);

  function scrollLog() {
    var log = document.getElementById("log-text");
    if (log) { log.scrollTop = log.scrollHeight; }
  }
  document.addEventListener("DOMContentLoaded", scrollLog);
  document.addEventListener("htmx:afterSwap", scrollLog);
  document.addEventListener("htmx:afterSettle", scrollLog);
})();
