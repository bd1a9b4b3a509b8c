// Trace page: the selected span is marked, and the arrow keys move between spans.
(function () {
  "use strict";
  function rows() { return Array.from(document.querySelectorAll("#span-tree .tree-row")); }
  function select(row) {
    rows().forEach(function (r) { r.setAttribute("aria-selected", r === row ? "true" : "false"); });
  }
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("#span-tree .tree-row");
    if (row) { select(row); }
  });
  document.addEventListener("keydown", function (event) {
    var row = event.target.closest && event.target.closest("#span-tree .tree-row");
    if (!row || (event.key !== "ArrowDown" && event.key !== "ArrowUp")) { return; }
    var all = rows(), index = all.indexOf(row) + (event.key === "ArrowDown" ? 1 : -1);
    if (index >= 0 && index < all.length) { all[index].focus(); }
    event.preventDefault();
  });
  var chosen = document.querySelector('#span-tree .tree-row[aria-selected="true"]');
  if (chosen) { chosen.scrollIntoView({block: "nearest"}); }
})();
