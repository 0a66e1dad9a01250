// The WebGL2 viewer (NiiVue, vendored from npm): opened on demand, it loads the prepared
// T1 post-contrast (FLAIR in a visit without it: data-volume) and the segmentation (label colours as in the slice viewer). Where WebGL2 is
// missing the panel says so and the server-rendered slice viewer above remains.
(function () {
  "use strict";
  var panel = document.getElementById("niivue-panel");
  if (!panel) { return; }
  var status = document.getElementById("niivue-status");
  var canvas = document.getElementById("niivue-canvas");
  var base = panel.getAttribute("data-base");
  var volume = panel.getAttribute("data-volume") || "t1c";
  var started = false;

  function say(state, text) {
    panel.setAttribute("data-state", state);
    status.textContent = text;
  }

  function webgl2() {
    try {
      return !!document.createElement("canvas").getContext("webgl2");
    } catch (ignored) {
      return false;
    }
  }

  function open() {
    if (started || !panel.open) { return; }
    started = true;
    if (!window.niivue || !webgl2()) {
      canvas.hidden = true;
      say("unavailable", "WebGL2 is not available in this browser: use the slice viewer above.");
      return;
    }
    say("loading", "Loading the volumes…");
    // Radiological convention (the patient's right on the screen's left), as in the slice viewer.
    var viewer = new window.niivue.Niivue({
      backColor: [0, 0, 0, 1], show3Dcrosshair: true, isRadiologicalConvention: true
    });
    viewer.attachToCanvas(canvas);
    viewer.loadVolumes([
      { url: base + volume + ".nii.gz", name: volume + ".nii.gz" },
      { url: base + "seg.nii.gz", name: "seg.nii.gz", opacity: 0.5 }
    ]).then(function () {
      var labels = viewer.volumes[1];
      var colours = document.getElementById("niivue-labels");
      if (labels && labels.setColormapLabel && colours) {
        // The server's colours for this visit (Okabe-Ito; a visit without T1 post-contrast
        // shows one whole-tumour colour, as in the slice viewer).
        labels.setColormapLabel(JSON.parse(colours.textContent));
        viewer.updateGLVolume();
      }
      viewer.setSliceType(viewer.sliceTypeMultiplanar);
      say("loaded", "Drag to move the crosshair; scroll to change slices.");
    }).catch(function (error) {
      say("failed", "Could not load the volumes (" + error.message + ").");
    });
  }

  panel.addEventListener("toggle", open);
})();
