// Live pipeline progress on the patient page: while a visit is being analysed, poll its state
// and reload the page once every analysis has finished (so the results and chart appear).
(function () {
  "use strict";
  var table = document.getElementById("visits");
  if (!table || table.getAttribute("data-busy") !== "true") { return; }
  var url = table.getAttribute("data-progress-url");
  var note = document.getElementById("progress-note");

  function update(state) {
    state.visits.forEach(function (visit) {
      var row = table.querySelector('tr[data-visit="' + visit.code + '"]');
      if (!row) { return; }
      var cell = row.querySelector("td.status");
      var text = visit.status === "failed" ? "failed: " + visit.error
        : visit.status === "done" ? "done" : visit.stage + " (" + visit.status + ")";
      if (cell.textContent !== text) { cell.textContent = text; }
      cell.setAttribute("data-status", visit.status || "none");
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("progress " + response.status); }
        return response.json();
      })
      .then(function (state) {
        update(state);
        if (state.busy) {
          window.setTimeout(poll, 3000);
        } else {
          note.textContent = "All analyses finished; reloading.";
          window.location.reload();
        }
      })
      .catch(function () {
        note.textContent = "Lost contact with the server; retrying.";
        window.setTimeout(poll, 10000);
      });
  }
  window.setTimeout(poll, 3000);
})();
