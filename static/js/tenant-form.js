// The tenant create/clone form (templates/tenants/form.html).
(function () {
  var form = document.querySelector("[data-testid=tenant-form]");
  if (!form) return;
  // Disable the button after the first submit; the hidden operation id covers what gets through anyway.
  form.addEventListener("submit", function () {
    var b = form.querySelector("[data-once]");
    setTimeout(function () { b.disabled = true; }, 0);
  });
  // The VoiceIt account type only means something for a VoiceIt connection.
  var voiceit = (form.getAttribute("data-voiceit-connections") || "").split(" ").filter(Boolean);
  var select = document.getElementById("id_connection"), field = document.getElementById("voiceit-type-field");
  function sync() { if (select && field) field.style.display = voiceit.indexOf(select.value) >= 0 ? "" : "none"; }
  if (select) { select.addEventListener("change", sync); sync(); }
})();
