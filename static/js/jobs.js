// Live progress for long work: any element with data-job-url is refreshed until the job ends.
(function () {
  function render(el, job) {
    el.querySelector("[data-job-state]").textContent = job.state_label;
    el.querySelector("[data-job-state]").className = "badge " + job.state;
    el.querySelector("[data-job-bar]").style.width = job.percent + "%";
    el.querySelector("[data-job-count]").textContent = job.total ? job.done + " / " + job.total : "";
    el.querySelector("[data-job-message]").textContent = job.message || "";
    var list = el.querySelector("[data-job-results]");
    if (list) {
      list.innerHTML = "";
      job.results.forEach(function (r) {
        var tr = document.createElement("tr");
        [r.label || r.key, r.ok ? "OK" : "Failed", r.message || ""].forEach(function (text) {
          var td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
        });
        tr.className = r.ok ? "ok" : "failed";
        list.appendChild(tr);
      });
    }
    el.dataset.jobFinished = job.finished ? "true" : "false";
    el.setAttribute("data-job-state-value", job.state);
  }
  function poll(el) {
    fetch(el.dataset.jobUrl, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (job) {
        render(el, job);
        if (!job.finished) { setTimeout(function () { poll(el); }, 700); }
        else if (el.dataset.reloadOnFinish) { window.location.reload(); }
      })
      .catch(function () { setTimeout(function () { poll(el); }, 2000); });
  }
  document.querySelectorAll("[data-job-url]").forEach(function (el) {
    // The bar's first width comes from the page (data-percent): the policy allows no style attribute.
    var bar = el.querySelector("[data-job-bar]");
    if (bar) bar.style.width = (parseInt(bar.getAttribute("data-percent"), 10) || 0) + "%";
    if (el.dataset.jobFinished !== "true") poll(el);
  });
})();
