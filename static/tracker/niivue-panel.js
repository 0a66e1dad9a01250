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
  var source = document.getElementById("niivue-source");
  var started = false;
  var viewer = null;

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
    viewer = new window.niivue.Niivue({
      backColor: [0, 0, 0, 1], show3Dcrosshair: true, isRadiologicalConvention: true,
      isOrientationTextVisible: true,
      // where the crosshair is: mm (the scanner's coordinates) and the voxel's value
      onLocationChange: function (data) {
        if (data && data.string) { status.textContent = data.string; }
      }
    });
    viewer.attachToCanvas(canvas);
    load();
  }

  // The prepared (normalised) image, or the original one as acquired; the segmentation on top.
  function load() {
    var name = (source && source.value === "original") ? "original-" + volume : volume;
    say("loading", "Loading the volumes…");
    viewer.loadVolumes([
      { url: base + name + ".nii.gz", name: name + ".nii.gz" },
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
      say("loaded", "Click or drag to move the crosshair (linked across the planes); scroll to " +
        "change slices; right-drag for window/level.");
    }).catch(function (error) {
      say("failed", "Could not load the volumes (" + error.message + ").");
    });
  }

  panel.addEventListener("toggle", open);
  if (source) {
    source.addEventListener("change", function () { if (viewer) { load(); } });
  }
})();
