// Wide tables scroll inside their own box instead of widening the page (phones): every table
// of the page sits in a <div class="table-scroll" role="region"> named after the table (its
// aria-label, its caption, or the heading above it). While the box really scrolls it is
// focusable, so a keyboard user can scroll it too. Tables that htmx swaps in (live parts
// replace the table itself) land in the box already there.
(function () {
  function nameOf(table) {
    var label = table.getAttribute("aria-label") || (table.caption && table.caption.textContent);
    var node = table.closest(".card, section, main") || document.body;
    if (!label) {
      var headings = node.querySelectorAll("h1, h2, h3");
      for (var i = headings.length - 1; i >= 0 && !label; i--) {
        if (headings[i].compareDocumentPosition(table) & Node.DOCUMENT_POSITION_FOLLOWING) label = headings[i].textContent;
      }
    }
    return (label || "Table").trim().replace(/\s+/g, " ") + " (table)";
  }
  function focusable(box) {
    if (box.scrollWidth > box.clientWidth + 1) {
      box.setAttribute("tabindex", "0");
    } else {
      box.removeAttribute("tabindex");
    }
  }
  function wrap(root) {
    var tables = root.tagName === "TABLE" ? [root] : root.querySelectorAll ? root.querySelectorAll("main table") : [];
    Array.prototype.forEach.call(tables, function (table) {
      var box = table.parentElement;
      if (!box.classList.contains("table-scroll")) {
        box = document.createElement("div");
        box.className = "table-scroll";
        box.setAttribute("role", "region");
        table.parentElement.insertBefore(box, table);
        box.appendChild(table);
      }
      box.setAttribute("aria-label", nameOf(table));
      focusable(box);
    });
  }
  window.addEventListener("resize", function () {
    document.querySelectorAll(".table-scroll").forEach(focusable);
  });
  if (window.htmx) {
    window.htmx.onLoad(wrap);
  } else {
    document.addEventListener("DOMContentLoaded", function () { wrap(document); });
  }
})();
