// Preselect the visitor's time zone (the server default is UTC); the select stays changeable.
(function () {
  var select = document.getElementById("timezone");
  if (!select || !select.dataset.detect) return;
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) { select.value = zone; break; }
    }
  } catch (e) { /* old browser: keep UTC */ }
})();
