// Live parts (portal/live.py): htmx polls them; this file adds what htmx has no setting for.
// - While the tab is hidden no refresh is sent (the request is cancelled before it leaves);
//   when the tab is visible again every live part refreshes at once.
// - Progress bars take their width from data-percent: the policy allows no style attribute,
//   so the width is set through the DOM, on the first render and after every swap.
// - Once the page is being left (a form sent, a link followed) no refresh goes out and no answer
//   is applied: an answer asking for a reload (a job that just finished) would otherwise cancel
//   the navigation the user started. A navigation that leaves the page in place (a download)
//   lifts this after a few seconds.
(function () {
  var leaving = false;
  var leavingTimer = null;
  window.addEventListener("beforeunload", function () {
    leaving = true;
    clearTimeout(leavingTimer);
    leavingTimer = setTimeout(function () { leaving = false; }, 5000);
  });
  window.addEventListener("pageshow", function () { leaving = false; });
  function isLive(event) {
    return event.target.hasAttribute && event.target.hasAttribute("data-live");
  }
  function widths(root) {
    var bars = root.querySelectorAll ? root.querySelectorAll("[data-job-bar]") : [];
    bars.forEach(function (bar) {
      bar.style.width = Math.max(0, Math.min(100, parseInt(bar.getAttribute("data-percent"), 10) || 0)) + "%";
    });
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if ((document.hidden || leaving) && isLive(event)) event.preventDefault();
  });
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    if (leaving && isLive(event)) event.preventDefault();
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
