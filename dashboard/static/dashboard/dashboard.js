// Every page: "/" jumps to the page's search field (as on most tools), Escape leaves it.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey) {
      var field = document.querySelector("[data-search]");
      if (field) { field.focus(); field.select(); event.preventDefault(); }
    } else if (event.key === "Escape" && typing) {
      event.target.blur();
    }
  });
})();
