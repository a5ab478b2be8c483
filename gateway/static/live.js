// Keeps a live round's page current without a full reload: the page is
// fetched again every few seconds and <main> is swapped in place only when it
// changed, keeping the scroll position and open <details>. It stops once the
// fetched page says the round is no longer live.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || main.dataset.live !== "true") return;
  var every = 1000 * Number(main.dataset.refreshS || "5");

  function openDetails(root) {
    return Array.prototype.map.call(root.querySelectorAll("details[id]"), function (d) {
      return d.open ? d.id : null;
    }).filter(Boolean);
  }

  function refresh() {
    fetch(window.location.href, {headers: {Accept: "text/html"}, credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("status " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (!fresh) return;
        if (fresh.innerHTML !== main.innerHTML) {
          var open = openDetails(main);
          main.innerHTML = fresh.innerHTML;
          open.forEach(function (id) {
            var d = document.getElementById(id);
            if (d) d.open = true;
          });
          document.dispatchEvent(new CustomEvent("amend:refreshed"));
        }
        main.dataset.live = fresh.dataset.live;
        if (fresh.dataset.live === "true") window.setTimeout(refresh, every);
      })
      .catch(function () {
        window.setTimeout(refresh, every * 2); // the gateway restarting: try again later
      });
  }

  window.setTimeout(refresh, every);
})();
