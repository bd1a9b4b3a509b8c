// Draws every chart of a page with uPlot: a <div data-chart="ID"> whose data sits in the
// <script type="application/json" id="ID"> Django's json_script wrote:
//   {"data": [[x...], [y...], ...], "labels": [...], "kind": "time"|"bars", "unit": "..."}
// Drawn on load and again after htmx swaps part of the page in. The uPlot instances are kept
// in window.dashboardCharts by ID (the browser tests read their data from there).
(function () {
  "use strict";
  var PALETTE = ["#4f7cff", "#f08c2e", "#2fb37a", "#d94a6a", "#8d6cf0", "#c9a227",
                 "#2aa7c9", "#9a5b2e", "#6d8a2f", "#b0489b", "#7a7f8c"];
  window.dashboardCharts = window.dashboardCharts || {};

  function ink() {
    var style = getComputedStyle(document.documentElement);
    return {
      text: style.getPropertyValue("--muted").trim() || "#667",
      grid: style.getPropertyValue("--grid").trim() || "rgba(128,128,128,0.15)",
      panel: style.getPropertyValue("--panel").trim() || "#fff",
    };
  }

  function number(value) {
    if (value == null) return "";
    var abs = Math.abs(value);
    if (abs >= 1e9) return (value / 1e9).toFixed(1) + "G";
    if (abs >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (abs >= 1e3) return (value / 1e3).toFixed(1) + "k";
    if (abs > 0 && abs < 0.01) return value.toExponential(1);
    return String(Math.round(value * 100) / 100);
  }

  function draw(holder) {
    var id = holder.getAttribute("data-chart");
    var source = document.getElementById(id);
    if (!source || typeof uPlot === "undefined") return;
    var spec = JSON.parse(source.textContent);
    var old = window.dashboardCharts[id];
    if (old) old.destroy();
    holder.innerHTML = "";
    var colors = ink();
    var bars = spec.kind === "bars";
    var axis = {stroke: colors.text, grid: {stroke: colors.grid}, ticks: {stroke: colors.grid}};
    var series = [{}];
    for (var i = 1; i < spec.data.length; i++) {
      var color = PALETTE[(i - 1) % PALETTE.length];
      series.push({
        label: spec.labels[i - 1] || ("series " + i),
        stroke: color,
        width: bars ? 1 : 2,
        fill: bars ? color + "aa" : undefined,
        paths: bars ? uPlot.paths.bars({size: [0.8, 60]}) : undefined,
        points: {show: spec.data[0].length < 40, fill: colors.panel},
        value: function (u, v) { return v == null ? "-" : number(v) + (spec.unit || ""); },
      });
    }
    var xAxis = Object.assign({}, axis);
    if (bars && spec.ticks) {  // categories or bin edges, drawn at their index
      xAxis.values = function (u, splits) {
        return splits.map(function (s) { return spec.ticks[s] != null ? spec.ticks[s] : ""; });
      };
      xAxis.splits = function () { return spec.ticks.map(function (_, i) { return i; }); };
    }
    var options = {
      width: Math.max(280, holder.clientWidth || 600),
      height: parseInt(holder.getAttribute("data-height") || "220", 10),
      scales: {x: {time: !bars}},
      legend: {show: true},
      cursor: {drag: {x: !bars, y: false}},
      series: series,
      axes: [xAxis, Object.assign({}, axis, {values: function (u, splits) {
        return splits.map(number);
      }, size: 56})],
    };
    if (bars) options.scales.x.range = function (u, min, max) { return [min - 0.5, max + 0.5]; };
    window.dashboardCharts[id] = new uPlot(options, spec.data, holder);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
  var resizing;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { drawAll(document); }, 200);
  });
  if (window.matchMedia) {  // light/dark follows the system: redraw the axes' ink
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      drawAll(document);
    });
  }
})();
