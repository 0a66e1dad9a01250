// The WebGL2 viewer (NiiVue, vendored from npm): opened on demand, it loads the prepared
// T1 post-contrast (FLAIR in a visit without it: data-volume) and the segmentation (label colours as in the slice viewer). Where WebGL2 is
// missing the panel says so and the server-rendered slice viewer above remains.
//
// Editing the segmentation (NiiVue's drawing tools): the original image the segmentation was
// made on is loaded with the segmentation as the drawing, so what is drawn is on the
// segmentation's own grid; paint per label with a brush, fill an outline, erase, undo and redo
// (our own history of the drawing); saved through the API as a new segmentation version
// (NIfTI of the drawing), which the server checks, measures and assesses.
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

  // --- editing ---------------------------------------------------------------------------
  var edit = document.getElementById("niivue-edit");
  var done = [];  // copies of the drawing after each change (the last is what is shown)
  var undone = [];

  // Voxels per label of the drawing ("0:…,1:…,2:…,3:…"), for the page and its tests.
  function labelled() {
    var counts = [0, 0, 0, 0];
    var bitmap = viewer.drawBitmap;
    for (var i = 0; i < bitmap.length; i += 1) {
      if (bitmap[i] < 4) { counts[bitmap[i]] += 1; }
    }
    panel.setAttribute("data-labels", counts.join(","));
  }

  function plane() {
    var chosen = document.getElementById("edit-plane").value;
    viewer.setSliceType({
      axial: viewer.sliceTypeAxial, coronal: viewer.sliceTypeCoronal,
      sagittal: viewer.sliceTypeSagittal, multiplanar: viewer.sliceTypeMultiplanar
    }[chosen]);
  }

  function same(a, b) {
    if (!a || a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i += 1) { if (a[i] !== b[i]) { return false; } }
    return true;
  }

  // After each stroke (NiiVue's "draw" event, or the pointer let go: erasing sends no event):
  // the drawing as it now is, if it changed.
  var HISTORY = 30;  // strokes that can be undone (each a copy of the drawing)

  function remember() {
    if (same(done[done.length - 1], viewer.drawBitmap)) { return; }
    done.push(viewer.drawBitmap.slice());
    if (done.length > HISTORY + 1) { done.shift(); }
    undone = [];
    labelled();
  }

  function restore(bitmap) {
    viewer.drawBitmap.set(bitmap);
    viewer.refreshDrawing(true);
    labelled();
  }

  function pen() {
    var value = Number(document.getElementById("edit-pen").value);
    viewer.setPenValue(value, document.getElementById("edit-fill").checked);
    viewer.opts.penSize = Number(document.getElementById("edit-size").value);
  }

  function editStatus(text) { document.getElementById("edit-status").textContent = text; }

  function startEditing() {
    if (!viewer) { return; }
    var name = "original-" + volume;
    say("loading", "Loading the original image and the segmentation for editing…");
    if (source) { source.disabled = true; }
    viewer.loadVolumes([{ url: base + name + ".nii.gz", name: name + ".nii.gz" }])
      // the version the correction will name as its parent (the latest, even if another
      // person's correction is not measured yet)
      .then(function () { return viewer.loadDrawingFromUrl(edit.getAttribute("data-labels")); })
      .then(function (loaded) {
        if (!loaded || !viewer.drawBitmap) { throw new Error("the segmentation did not load"); }
        var colours = document.getElementById("niivue-labels");
        if (colours) { viewer.setDrawColormap(JSON.parse(colours.textContent)); }
        viewer.setDrawOpacity(0.6);
        viewer.setDrawingEnabled(true);
        pen();
        done = [];
        remember();
        viewer.onDrawingChanged = function (action) {
          if (action === "draw") { remember(); }
        };
        canvas.addEventListener("pointerup", function () { window.setTimeout(remember, 0); });
        plane();
        document.getElementById("edit-start").hidden = true;
        document.getElementById("edit-tools").hidden = false;
        panel.setAttribute("data-editing", "true");
        say("loaded", "Editing: drag to paint with the chosen label.");
      })
      .catch(function (error) {
        say("failed", "Could not start editing (" + error.message + ").");
      });
  }

  function save() {
    var reason = document.getElementById("edit-reason").value.trim();
    if (!reason) { editStatus("Say why the segmentation is corrected."); return; }
    editStatus("Saving…");
    viewer.saveImage({ filename: "", isSaveDrawing: true }).then(function (bytes) {
      var form = new FormData();
      form.append("labels", new Blob([bytes], { type: "application/octet-stream" }), "edited.nii");
      form.append("reason", reason);
      form.append("source", "edit");
      form.append("parent", edit.getAttribute("data-parent"));
      var token = document.querySelector("#correction-form [name=csrfmiddlewaretoken]");
      return fetch(edit.getAttribute("data-api"), {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRFToken": token ? token.value : "" }
      });
    }).then(function (response) {
      var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      if (!json) {  // a proxy's or the server's error page
        return [response.status, { detail: "the server answered " + response.status }];
      }
      return response.json().then(function (body) { return [response.status, body]; });
    }).then(function (answer) {
      var status = answer[0], body = answer[1];
      if (status === 201) {
        panel.setAttribute("data-saved", String(body.version));
        editStatus("Saved as version " + body.version + ".");
        window.location.reload();  // the page then lists the new version
        return;
      }
      var messages = body.detail ? [body.detail] : Object.keys(body).map(function (key) {
        return key + ": " + [].concat(body[key]).join("; ");
      });
      editStatus("Not saved: " + messages.join(" "));
    }).catch(function (error) {
      editStatus("Not saved (" + error.message + ").");
    });
  }

  if (edit) {
    document.getElementById("edit-start").addEventListener("click", startEditing);
    ["edit-pen", "edit-size", "edit-fill"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", pen);
    });
    document.getElementById("edit-plane").addEventListener("change", plane);
    document.getElementById("edit-undo").addEventListener("click", function () {
      if (done.length < 2) { return; }
      undone.push(done.pop());
      restore(done[done.length - 1]);
    });
    document.getElementById("edit-redo").addEventListener("click", function () {
      if (!undone.length) { return; }
      var next = undone.pop();
      done.push(next);
      restore(next);
    });
    document.getElementById("edit-save").addEventListener("click", save);
    document.getElementById("edit-cancel").addEventListener("click", function () {
      window.location.reload();
    });
  }

  panel.addEventListener("toggle", open);
  if (source) {
    source.addEventListener("change", function () { if (viewer) { load(); } });
  }
})();
