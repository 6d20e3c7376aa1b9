// A link to a cell (#s0-r12) opens its evidence; a link to a policy line shows it.
// The page reads without this script: every cell opens by a click on it.
(function () {
  function show() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") { node.open = true; }
    }
    if (target) { target.scrollIntoView({block: "center"}); }
  }
  function all(open, onlyFailing) {
    var cells = document.querySelectorAll(onlyFailing ? "details.cell.mismatch" : "details.cell");
    for (var i = 0; i < cells.length; i++) { cells[i].open = open; }
  }
  window.addEventListener("hashchange", show);
  document.addEventListener("DOMContentLoaded", function () {
    show();
    var buttons = document.querySelectorAll("button[data-open]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) {
        var how = event.currentTarget.getAttribute("data-open");
        all(how !== "none", how === "failing");
      });
    }
  });
})();
