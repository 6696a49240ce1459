// Reloads the page when what it shows changes (the issue, newsroom.toml, the site's templates,
// or the inbox's Maildir). It asks this server's small JSON address (data-watch) once a second,
// not at all while the tab is hidden, and stops after four hours. No library, nothing remote.
(function () {
  "use strict";
  var root = document.documentElement;
  var watch = root.getAttribute("data-watch");
  var shown = root.getAttribute("data-version");
  var status = document.getElementById("reload-status");
  var left = 4 * 60 * 60;
  if (!watch) {
    return;
  }
  function say(text) {
    if (status && status.textContent !== text) {
      status.textContent = text;
    }
  }
  function again(seconds) {
    window.setTimeout(poll, seconds * 1000);
  }
  function poll() {
    left -= 1;
    if (left < 0) {
      say("Stopped watching for changes: reload the page to watch again.");
      return;
    }
    if (document.hidden) {
      again(1);
      return;
    }
    fetch(watch, { cache: "no-store" })
      .then(function (answer) { return answer.json(); })
      .then(function (data) {
        if (data.version !== shown) {
          window.location.reload();
          return;
        }
        say("Watching for changes.");
        again(1);
      })
      .catch(function () {
        say("The preview server does not answer: is it still running?");
        again(3);
      });
  }
  again(1);
})();
