// A search box that narrows a list of choices as one types (the list works without it).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("input[data-filter]").forEach(function (box) {
    var list = document.getElementById(box.getAttribute("data-filter"));
    if (!list) { return; }
    box.addEventListener("input", function () {
      var wanted = box.value.trim().toLowerCase();
      list.querySelectorAll("[data-name]").forEach(function (item) {
        var name = item.getAttribute("data-name");
        var checked = item.querySelector("input:checked");
        item.hidden = wanted !== "" && name.indexOf(wanted) === -1 && !checked;
      });
    });
  });
});
