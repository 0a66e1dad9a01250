// Slice viewer: server-rendered PNG slices of the visit (and of the prior visit, registered),
// stacked: sequence, tumour-probability heat, segmentation. No library; works without WebGL.
(function () {
  "use strict";
  var viewer = document.getElementById("viewer");
  if (!viewer) { return; }
  var config = JSON.parse(viewer.getAttribute("data-config"));
  var base = viewer.getAttribute("data-base");
  var sequence = document.getElementById("sequence");
  var showLabels = document.getElementById("show-labels");
  var opacity = document.getElementById("opacity");
  var showHeat = document.getElementById("show-heat");
  var showPrior = document.getElementById("show-prior");
  var heatLegend = viewer.querySelector(".heat-legend");

  function source(layer, plane, index) {
    return base + layer + "/" + plane + "/" + index + ".png";
  }

  function draw(figure) {
    var plane = figure.getAttribute("data-plane");
    var index = Number(figure.querySelector("input.slice").value);
    figure.querySelector("output").textContent = (index + 1) + " / " + config.counts[plane];
    figure.querySelectorAll("img.layer").forEach(function (img) {
      var layer = img.getAttribute("data-layer");
      if (layer === "sequence") { layer = sequence.value; }
      if (img.hidden || img.closest(".stack").hidden) { return; }  // not shown: not fetched
      var wanted = source(layer, plane, index);
      if (img.getAttribute("src") !== wanted) { img.setAttribute("src", wanted); }
    });
  }

  function drawAll() {
    viewer.querySelectorAll("figure.plane").forEach(draw);
  }

  function applyOverlays() {
    viewer.querySelectorAll("img.labels").forEach(function (img) {
      img.hidden = !showLabels.checked;
      img.style.opacity = String(Number(opacity.value) / 100);
    });
    viewer.querySelectorAll("img.heat").forEach(function (img) {
      img.hidden = !showHeat.checked;
    });
    if (heatLegend) { heatLegend.hidden = !showHeat.checked; }
    if (showPrior) {
      viewer.querySelectorAll(".stack.prior").forEach(function (stack) {
        stack.hidden = !showPrior.checked;
      });
      viewer.classList.toggle("comparing", showPrior.checked);
    }
    drawAll();
  }

  viewer.querySelectorAll("figure.plane").forEach(function (figure) {
    var plane = figure.getAttribute("data-plane");
    var slider = figure.querySelector("input.slice");
    slider.max = String(config.counts[plane] - 1);
    slider.value = String(config.start[plane]);
    slider.addEventListener("input", function () { draw(figure); });
    // Mouse wheel over a slice moves through slices, as in radiology viewers.
    figure.querySelector(".pair").addEventListener("wheel", function (event) {
      event.preventDefault();
      var next = Number(slider.value) + (event.deltaY > 0 ? 1 : -1);
      slider.value = String(Math.max(0, Math.min(config.counts[plane] - 1, next)));
      draw(figure);
    }, { passive: false });
  });
  [sequence, showLabels, showHeat, showPrior].forEach(function (control) {
    if (control) { control.addEventListener("change", applyOverlays); }
  });
  opacity.addEventListener("input", applyOverlays);
  applyOverlays();
})();
