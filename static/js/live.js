// Live parts (portal/live.py): htmx polls them; this file adds what htmx has no setting for.
// - While the tab is hidden no refresh is sent (the request is cancelled before it leaves);
//   when the tab is visible again every live part refreshes at once.
// - Progress bars take their width from data-percent: the policy allows no style attribute,
//   so the width is set through the DOM, on the first render and after every swap.
(function () {
  function widths(root) {
    var bars = root.querySelectorAll ? root.querySelectorAll("[data-job-bar]") : [];
    bars.forEach(function (bar) {
      bar.style.width = Math.max(0, Math.min(100, parseInt(bar.getAttribute("data-percent"), 10) || 0)) + "%";
    });
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (document.hidden && event.target.hasAttribute && event.target.hasAttribute("data-live")) {
      event.preventDefault();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (document.hidden || !window.htmx) return;
    document.querySelectorAll("[data-live]").forEach(function (el) { window.htmx.trigger(el, "live-refresh"); });
  });
  if (window.htmx) {
    window.htmx.onLoad(widths);
  } else {
    document.addEventListener("DOMContentLoaded", function () { widths(document); });
  }
})();
