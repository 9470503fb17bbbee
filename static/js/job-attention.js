// A job that stops for a human (needs attention) is not "finished", so jobs.js keeps polling;
// reload once so the Retry / Abandon buttons appear (templates/tenants/detail.html).
(function () {
  var el = document.querySelector("[data-job-url]");
  if (!el || el.getAttribute("data-job-state-value") === "needs_attention") return;
  new MutationObserver(function () {
    if (el.getAttribute("data-job-state-value") === "needs_attention") window.location.reload();
  }).observe(el, {attributes: true, attributeFilter: ["data-job-state-value"]});
})();
