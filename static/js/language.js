// The language switcher (templates/portal/_language.html) submits as soon as a language is chosen;
// its button stays for browsers without JavaScript.
(function () {
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.id !== "language-select" || !select.form) return;
    select.form.submit();
  });
})();
