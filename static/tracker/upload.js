// Upload with a progress bar: the form posts to the REST API (same session, CSRF header) and
// shows the server's validation messages, naming each bad file. Without JavaScript the form
// posts to the page, which runs the same checks.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData) { return; }
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var errors = document.getElementById("upload-errors");

  // What a field is, as the form shows it, and the file chosen in it: a message names both.
  function describe(field) {
    var label = form.querySelector('label[for="' + field + '"]');
    var input = form.querySelector('input[type=file][name="' + field + '"]');
    var name = label ? label.textContent : field;
    if (input && input.files && input.files.length) { name += " (" + input.files[0].name + ")"; }
    return name;
  }

  function reset() {
    bar.hidden = true;
    bar.value = 0;
  }

  function showErrors(body) {
    errors.textContent = "";
    var intro = document.createElement("p");
    intro.textContent = "Nothing was stored:";
    var list = document.createElement("ul");
    Object.keys(body).forEach(function (field) {
      var messages = Array.isArray(body[field]) ? body[field] : [body[field]];
      messages.forEach(function (message) {
        var item = document.createElement("li");
        var name = document.createElement("strong");
        name.textContent = describe(field);
        item.appendChild(name);
        item.appendChild(document.createTextNode(": " + (typeof message === "string" ? message : JSON.stringify(message))));
        list.appendChild(item);
      });
    });
    errors.appendChild(intro);
    errors.appendChild(list);
    errors.hidden = false;
    errors.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    // Empty file inputs are not sent (the API treats each named file as an upload).
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      var file = data.get(input.name);
      if (file && file.size === 0 && !file.name) { data.delete(input.name); }
    });
    var chosen = Array.prototype.some.call(
      form.querySelectorAll("input[type=file]"),
      function (input) { return input.files && input.files.length > 0; }
    );
    if (!chosen) {
      reset();
      showErrors({ upload: ["no file chosen: choose the visit's files (T1 post-contrast or FLAIR at least), or one zip"] });
      status.textContent = "";
      return;
    }
    var request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("data-api"));
    request.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    request.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    errors.hidden = true;
    status.textContent = "Uploading…";
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
    });
    request.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = { upload: request.statusText }; }
      if (request.status === 201) {
        status.textContent = "Stored; the analysis is queued.";
        window.location.assign(form.getAttribute("data-done"));
      } else {
        status.textContent = "Refused (" + request.status + ").";
        reset();
        showErrors(body);
      }
    });
    request.addEventListener("error", function () {
      status.textContent = "The upload did not reach the server.";
      reset();
    });
    request.send(data);
  });
})();
