// The team form shows the parts the chosen mode uses: the graph's edges in graph mode, the selector or the
// orchestrator model in their modes. The others stay in the page, hidden; without this script all are shown.
(function () {
  var mode = document.getElementById("id_mode");
  if (!mode) return;
  function field(id) { var el = document.getElementById(id); return el && el.closest(".field"); }
  function show() {
    var m = mode.value;
    document.getElementById("graph").hidden = m !== "graph";
    document.getElementById("mode-models").hidden = m !== "selector" && m !== "magentic_one";
    field("id_selector_model").hidden = m !== "selector";
    field("id_orchestrator_model").hidden = m !== "magentic_one";
  }
  mode.addEventListener("change", show);
  show();
})();
