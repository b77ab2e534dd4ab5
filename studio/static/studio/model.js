// "Test connection": POST /api/models/{id}/test/ with this session (and its CSRF token); shows {ok, latency_ms,
// error}. A server without that endpoint answers 404 and the page says so instead of failing silently.
(function () {
  "use strict";
  const button = document.getElementById("test-connection");
  if (!button) return;
  const out = document.getElementById("test-result");
  const csrf = () => (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  function show(kind, text) {
    out.className = "test-result " + kind;
    out.textContent = text;
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    show("pending", "Calling the model…");
    try {
      const response = await fetch(button.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrf() },
      });
      const data = await response.json().catch(() => null);
      if (response.status === 404 || response.status === 405) {
        show("unavailable", "Connection tests are not available on this server (POST " + button.dataset.url +
          " answered " + response.status + "). The configuration is saved; a run will show any model error.");
      } else if (!response.ok) {
        const error = (data && data.error) || { code: String(response.status), message: response.statusText };
        show("bad", "Could not test: " + error.code + ": " + error.message);
      } else if (data.ok) {
        show("ok", "Connected: the model answered in " + data.latency_ms + " ms.");
      } else {
        const error = data.error || {};
        show("bad", "Failed after " + data.latency_ms + " ms: " + (error.code || "error") + ": " + (error.message || ""));
      }
    } catch (e) {
      show("bad", "Could not reach the server: " + e.message);
    } finally {
      button.disabled = false;
    }
  });
})();
