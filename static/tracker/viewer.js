// Slice viewer: server-rendered PNG slices of the visit (and of the prior visit, registered onto
// this visit's grid, so it scrolls with it), stacked: sequence, tumour-probability heat,
// segmentation. Linked crosshair: a click in one plane moves the other two there; the position
// is given in mm. Zoom, and window/level: a linear ramp with clipping (an SVG
// feComponentTransfer filter) over the stored 8-bit range, read out in the prepared image's
// units (z-score within the brain); right-drag sets it as in radiology viewers. No library.
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
  var zoom = document.getElementById("zoom");
  var windowWidth = document.getElementById("window-width");
  var windowLevel = document.getElementById("window-level");
  var windowValues = document.getElementById("window-values");
  var ramps = document.querySelectorAll("#window-filter feFuncR, #window-filter feFuncG, " +
    "#window-filter feFuncB");
  var showCrosshair = document.getElementById("show-crosshair");
  var position = document.getElementById("position");
  var counts = config.counts;

  function index(plane) {
    return Number(viewer.querySelector('figure.plane[data-plane="' + plane + '"] input.slice').value);
  }

  function setIndex(plane, value) {
    var slider = viewer.querySelector('figure.plane[data-plane="' + plane + '"] input.slice');
    slider.value = String(Math.max(0, Math.min(counts[plane] - 1, value)));
  }

  // Where the other planes cut this one, as fractions of its width and height (columns and
  // rows of the radiological display: axial x by y, coronal x by z from the top, sagittal y by
  // z from the top).
  function crossing(plane) {
    var x = (index("sagittal") + 0.5) / counts.sagittal;
    var y = (index("coronal") + 0.5) / counts.coronal;
    var zTop = (counts.axial - index("axial") - 0.5) / counts.axial;
    if (plane === "axial") { return [x, y]; }
    if (plane === "coronal") { return [x, zTop]; }
    return [y, zTop];
  }

  function millimetres() {
    var grid = config.grid;
    if (!grid) { return ""; }
    var i = [index("sagittal"), index("coronal"), index("axial")];
    var p = [0, 1, 2].map(function (row) {
      var sum = grid.origin_mm[row];
      for (var col = 0; col < 3; col += 1) {
        sum += grid.direction[3 * row + col] * i[col] * grid.spacing_mm[col];
      }
      return sum.toFixed(1);
    });
    return "Crosshair at " + p.join(", ") + " mm (x, y, z; LPS).";
  }

  function showCrossings() {
    viewer.querySelectorAll("figure.plane").forEach(function (figure) {
      var at = crossing(figure.getAttribute("data-plane"));
      figure.querySelectorAll(".zoomed").forEach(function (box) {
        box.querySelector(".cross-v").style.left = (100 * at[0]) + "%";
        box.querySelector(".cross-h").style.top = (100 * at[1]) + "%";
        box.style.setProperty("--focus-x", (100 * at[0]) + "%");
        box.style.setProperty("--focus-y", (100 * at[1]) + "%");
        box.style.transform = "scale(" + (Number(zoom.value) / 100) + ")";
      });
    });
    viewer.classList.toggle("no-crosshair", !showCrosshair.checked);
    position.textContent = millimetres();
  }

  // Window/level as fractions of the stored range: grey g (0-1) is shown as
  // (g - (level - width / 2)) / width, clipped to 0-1.
  function applyWindow() {
    var width = Number(windowWidth.value) / 100;
    var level = Number(windowLevel.value) / 100;
    var slope = 1 / width;
    var intercept = 0.5 - level / width;
    ramps.forEach(function (ramp) {
      ramp.setAttribute("slope", slope.toFixed(4));
      ramp.setAttribute("intercept", intercept.toFixed(4));
    });
    viewer.querySelectorAll("img.base").forEach(function (img) {
      img.style.filter = "url(#window-filter)";
    });
    var range = (config.windows || {})[sequence.value];
    if (!range) { windowValues.textContent = ""; return; }
    var span = range[1] - range[0];
    windowValues.textContent = "Window " + (width * span).toFixed(2) + ", level " +
      (range[0] + level * span).toFixed(2) + " (" + sequence.value +
      ", z-score within the brain; the stored range is " + range[0].toFixed(2) + " to " +
      range[1].toFixed(2) + ").";
  }

  function setWindow(width, level) {
    windowWidth.value = String(Math.max(Number(windowWidth.min), Math.min(Number(windowWidth.max), width)));
    windowLevel.value = String(Math.max(Number(windowLevel.min), Math.min(Number(windowLevel.max), level)));
    applyWindow();
  }

  // A click in one plane: the other two move to that point.
  function pick(plane, event) {
    var rect = event.currentTarget.querySelector("img.base").getBoundingClientRect();
    var fx = (event.clientX - rect.left) / rect.width;
    var fy = (event.clientY - rect.top) / rect.height;
    if (fx < 0 || fx > 1 || fy < 0 || fy > 1) { return; }
    var fromTop = counts.axial - 1 - Math.floor(fy * counts.axial);
    if (plane === "axial") {
      setIndex("sagittal", Math.floor(fx * counts.sagittal));
      setIndex("coronal", Math.floor(fy * counts.coronal));
    } else if (plane === "coronal") {
      setIndex("sagittal", Math.floor(fx * counts.sagittal));
      setIndex("axial", fromTop);
    } else {
      setIndex("coronal", Math.floor(fx * counts.coronal));
      setIndex("axial", fromTop);
    }
    drawAll();
  }

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
    showCrossings();
  }

  function applyOverlays() {
    viewer.querySelectorAll("img.labels").forEach(function (img) {
      img.hidden = !showLabels.checked;
      img.style.opacity = String(Number(opacity.value) / 100);
    });
    viewer.querySelectorAll("img.heat").forEach(function (img) {
      img.hidden = !showHeat || !showHeat.checked;
    });
    if (heatLegend) { heatLegend.hidden = !showHeat || !showHeat.checked; }
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
    slider.addEventListener("input", function () { draw(figure); showCrossings(); });
    figure.querySelector(".stack.current").addEventListener("click", function (event) {
      pick(plane, event);
    });
    // Right-drag: left-right widens or narrows the window, up-down moves the level.
    var pair = figure.querySelector(".pair");
    pair.addEventListener("contextmenu", function (event) { event.preventDefault(); });
    pair.addEventListener("pointerdown", function (event) {
      if (event.button !== 2) { return; }
      event.preventDefault();
      pair.setPointerCapture(event.pointerId);  // the drag ends here even outside the window
      var start = [event.clientX, event.clientY];
      var from = [Number(windowWidth.value), Number(windowLevel.value)];
      function stop() {
        pair.removeEventListener("pointermove", move);
        pair.removeEventListener("pointerup", stop);
        pair.removeEventListener("pointercancel", stop);
      }
      function move(e) {
        if ((e.buttons & 2) === 0) { stop(); return; }
        setWindow(from[0] + (e.clientX - start[0]) / 2, from[1] - (e.clientY - start[1]) / 2);
      }
      pair.addEventListener("pointermove", move);
      pair.addEventListener("pointerup", stop);
      pair.addEventListener("pointercancel", stop);
    });
    // Mouse wheel over a slice moves through slices, as in radiology viewers.
    figure.querySelector(".pair").addEventListener("wheel", function (event) {
      event.preventDefault();
      var next = Number(slider.value) + (event.deltaY > 0 ? 1 : -1);
      slider.value = String(Math.max(0, Math.min(config.counts[plane] - 1, next)));
      draw(figure);
      showCrossings();
    }, { passive: false });
  });
  [sequence, showLabels, showHeat, showPrior].forEach(function (control) {
    if (control) { control.addEventListener("change", applyOverlays); }
  });
  sequence.addEventListener("change", applyWindow);
  opacity.addEventListener("input", applyOverlays);
  zoom.addEventListener("input", showCrossings);
  [windowWidth, windowLevel].forEach(function (control) {
    control.addEventListener("input", applyWindow);
  });
  document.getElementById("window-reset").addEventListener("click", function () {
    setWindow(100, 50);
  });
  showCrosshair.addEventListener("change", showCrossings);
  applyOverlays();
  applyWindow();
})();
