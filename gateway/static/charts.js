// Draws every chart of the page with Plotly.js (served by the gateway from
// the plotly wheel). Each chart's figure is JSON in a <script
// type="application/json"> beside its <div>, rendered by the server.
(function () {
  "use strict";
  var config = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"]};
  Array.prototype.forEach.call(document.querySelectorAll("div[data-chart]"), function (el) {
    var source = document.getElementById(el.dataset.chart + "-figure");
    if (!source) return;
    var figure = JSON.parse(source.textContent);
    window.Plotly.newPlot(el, figure.data, figure.layout, config);
  });
})();
