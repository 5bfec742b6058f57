// Draws the device page's charts with the vendored uPlot (no build step).
// Data: the JSON in <script id="chart-data">; each <div data-chart="..."> names its chart.
(function () {
  "use strict";

  const COLORS = { p50: "#2b6cb0", p95: "#c05621", main: "#2f855a", score: "#6b46c1",
                   threshold: "#c53030", band: "rgba(229, 62, 62, 0.12)" };

  function line(label, stroke, extra) {
    return Object.assign({ label: label, stroke: stroke, width: 2, spanGaps: true,
                           points: { show: false } }, extra || {});
  }

  // The drift zone: from the threshold line up to the top of the plot.
  function thresholdBand() {
    return line("threshold", COLORS.threshold, {
      dash: [6, 4], width: 1.5, fill: COLORS.band,
      fillTo: function (u) { return u.scales.y.max; },
    });
  }

  const CHARTS = {
    latency: function (t) {
      return { series: [line("p50 ms", COLORS.p50), line("p95 ms", COLORS.p95)],
               data: [t.ts, t.latency_p50, t.latency_p95] };
    },
    inferences: function (t) {
      return { series: [line("inferences", COLORS.main), line("errors", COLORS.threshold)],
               data: [t.ts, t.inferences, t.errors] };
    },
    confidence: function (t) {
      return { series: [line("mean confidence", COLORS.main)],
               data: [t.ts, t.confidence_mean], range: [0, 1] };
    },
    per_frame: function (t) {
      return { series: [line("detections per frame", COLORS.main)],
               data: [t.ts, t.per_frame] };
    },
    empty_rate: function (t) {
      return { series: [line("empty frames", COLORS.p95)],
               data: [t.ts, t.empty_rate], range: [0, 1] };
    },
    score: function (t) {
      return { series: [line("mean score", COLORS.main)],
               data: [t.ts, t.score_mean], range: [0, 1] };
    },
    drift: function (_t, d, el) {
      const k = d[el.dataset.kind];
      const values = k.score.concat(k.threshold).filter(Number.isFinite);
      const top = Math.max.apply(null, values.concat([0]));
      const bottom = Math.min.apply(null, values.concat([0]));  // a confidence drop can be < 0
      return { series: [line("score", COLORS.score, { points: { show: true, size: 5 } }),
                        thresholdBand()],
               data: [k.ts, k.score, k.threshold],
               range: [bottom * 1.15, (top || 1) * 1.15] };
    },
  };

  function options(el, spec) {
    const y = spec.range ? { range: spec.range } : {};
    return {
      width: Math.max(el.clientWidth, 240), height: 200,
      scales: { x: { time: true }, y: y },
      series: [{}].concat(spec.series),
      axes: [{}, { size: 56 }],
      legend: { live: true },
    };
  }

  function draw() {
    const source = document.getElementById("chart-data");
    if (!source || typeof uPlot === "undefined") return;
    const all = JSON.parse(source.textContent);
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      const make = CHARTS[el.dataset.chart];
      if (!make) return;
      const spec = make(all.telemetry, all.drift, el);
      if (!spec.data[0] || spec.data[0].length === 0) return;
      const plot = new uPlot(options(el, spec), spec.data, el);
      el.dataset.drawn = "true";
      new ResizeObserver(function () {
        plot.setSize({ width: Math.max(el.clientWidth, 240), height: 200 });
      }).observe(el);
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
})();
