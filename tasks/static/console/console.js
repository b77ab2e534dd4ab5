// The live console: plain JavaScript over the public API, /ws/tasks/{id}/ and /ws/events/.
// The access token stays in this tab's sessionStorage; the open task is in the URL (#task=ID),
// so a reload or a dropped connection picks the stream up where it was. The notices panel follows
// /ws/events/ and, after a dropped connection, resumes after the last notice it showed.
(function () {
  "use strict";

  const FINISHED = ["succeeded", "failed", "cancelled", "timed_out"];
  const $ = (id) => document.getElementById(id);
  const store = window.sessionStorage;

  const state = {
    taskId: null,
    lastSeq: 0,
    socket: null,
    finished: false,
    retries: 0,
    reconnectTimer: null,
    tokens: {},
  };

  // ---- API -------------------------------------------------------------------------------

  async function api(method, path, body, retried) {
    const headers = { Accept: "application/json" };
    const access = store.getItem("access");
    if (access) headers.Authorization = "Bearer " + access;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // token auth only: no cookies, so no CSRF questions
    });
    if (response.status === 401 && !retried && (await refreshAccess())) {
      return api(method, path, body, true);
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || { code: "error", message: response.statusText, details: {} };
      if (response.status === 401) showLogin();
      throw Object.assign(new Error(error.message), { code: error.code, details: error.details, status: response.status });
    }
    return data;
  }

  async function refreshAccess() {
    const refresh = store.getItem("refresh");
    if (!refresh) return false;
    const response = await fetch("/api/auth/token/refresh/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh }),
      credentials: "omit",
    });
    if (!response.ok) return false;
    const data = await response.json();
    store.setItem("access", data.access);
    if (data.refresh) store.setItem("refresh", data.refresh);
    return true;
  }

  function describe(error) {
    const details = error.details && Object.keys(error.details).length ? " " + JSON.stringify(error.details) : "";
    return error.message + details;
  }

  // ---- login -----------------------------------------------------------------------------

  function showLogin() {
    closeSocket();
    closeNotices();
    $("app-section").hidden = true;
    $("whoami").hidden = true;
    $("login-section").hidden = false;
  }

  async function showApp() {
    const me = await api("GET", "/api/me/");
    $("user-label").textContent = me.username + " · " + me.customer.name + " (" + me.role + ")";
    $("whoami").hidden = false;
    $("login-section").hidden = true;
    $("app-section").hidden = false;
    openNotices();
    await loadTargets();
    const match = location.hash.match(/task=(\d+)/);
    if (match) openTask(Number(match[1]));
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    $("login-button").disabled = true;
    try {
      const tokens = await api("POST", "/api/auth/token/", {
        username: $("username").value,
        password: $("password").value,
      });
      store.setItem("access", tokens.access);
      store.setItem("refresh", tokens.refresh);
      $("password").value = "";
      await showApp();
    } catch (error) {
      $("login-error").textContent = describe(error);
    } finally {
      $("login-button").disabled = false;
    }
  });

  $("logout").addEventListener("click", () => {
    store.removeItem("access");
    store.removeItem("refresh");
    history.replaceState(null, "", location.pathname);
    showLogin();
  });

  // ---- agents and teams -------------------------------------------------------------------

  async function listAll(path) {
    const items = [];
    let url = path;
    while (url) {
      const page = await api("GET", url);
      items.push(...(page.results || page));
      url = page.next ? new URL(page.next, location.href).pathname + new URL(page.next, location.href).search : null;
    }
    return items;
  }

  async function loadTargets() {
    const [agents, teams] = await Promise.all([listAll("/api/agents/"), listAll("/api/teams/")]);
    fillOptions($("agent-options"), agents, "agent");
    fillOptions($("team-options"), teams, "team");
  }

  function fillOptions(group, items, kind) {
    group.replaceChildren();
    for (const item of items) {
      const option = document.createElement("option");
      option.value = kind + ":" + item.id;
      option.textContent = item.name + (item.status === "stopped" ? " (stopped)" : "");
      group.appendChild(option);
    }
  }

  // ---- tasks ------------------------------------------------------------------------------

  $("task-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("task-error").textContent = "";
    const [kind, id] = $("target").value.split(":");
    $("submit-task").disabled = true;
    try {
      const task = await api("POST", "/api/tasks/", { [kind]: Number(id), input: $("task-input").value });
      openTask(task.id);
    } catch (error) {
      $("task-error").textContent = describe(error);
    } finally {
      $("submit-task").disabled = false;
    }
  });

  $("cancel-task").addEventListener("click", async () => {
    $("cancel-task").disabled = true;
    try {
      await api("POST", "/api/tasks/" + state.taskId + "/cancel/");
    } catch (error) {
      $("task-error").textContent = describe(error);
      $("cancel-task").disabled = false;
    }
  });

  function openTask(taskId) {
    closeSocket();
    Object.assign(state, { taskId, lastSeq: 0, finished: false, retries: 0, tokens: {} });
    history.replaceState(null, "", "#task=" + taskId);
    $("task-id").textContent = "#" + taskId;
    $("events").replaceChildren();
    $("live-tokens").hidden = true;
    $("outcome").hidden = true;
    $("task-panel").hidden = false;
    setStatus("");
    connect();
  }

  // ---- the live stream --------------------------------------------------------------------

  function connect() {
    clearTimeout(state.reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + location.host + "/ws/tasks/" + state.taskId + "/";
    // The token travels as a subprotocol, not in the URL (no access logs full of tokens).
    const socket = new WebSocket(url, ["bearer", store.getItem("access") || ""]);
    state.socket = socket;
    setConnection(state.retries ? "reconnecting" : "connecting");
    socket.onopen = () => {
      socket.send(JSON.stringify({ after: state.lastSeq }));
      state.retries = 0;
      setConnection("live");
    };
    socket.onmessage = (message) => {
      if (socket !== state.socket) return;
      onFrame(JSON.parse(message.data));
    };
    socket.onclose = (event) => {
      if (socket !== state.socket) return;
      state.socket = null;
      onClose(event.code);
    };
  }

  async function onClose(code) {
    if (code === 1000 || state.finished) {
      setConnection("");
      return;
    }
    if (code === 4404) {
      setConnection("");
      $("task-error").textContent = "Task " + state.taskId + " not found";
      return;
    }
    if (code === 4401 && !(await refreshAccess())) {
      showLogin();
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    state.retries += 1;
    const delay = Math.min(5000, 250 * 2 ** Math.min(state.retries - 1, 5));
    setConnection("reconnecting");
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function closeSocket() {
    clearTimeout(state.reconnectTimer);
    if (state.socket) {
      const socket = state.socket;
      state.socket = null;
      socket.close(1000);
    }
  }

  window.addEventListener("online", () => {
    if (state.taskId && !state.finished && !state.socket) connect();
  });

  function onFrame(frame) {
    if (frame.type === "event") {
      const event = frame.event;
      if (event.seq <= state.lastSeq) return; // never shown twice, whatever happens
      state.lastSeq = event.seq;
      renderEvent(event);
    } else if (frame.type === "status") {
      setStatus(frame.status);
      if (FINISHED.includes(frame.status)) finish();
    } else if (frame.type === "token") {
      state.tokens[frame.source] = (state.tokens[frame.source] || "") + frame.text;
      $("live-tokens").textContent = Object.entries(state.tokens).map(([s, t]) => s + ": " + t).join("\n");
      $("live-tokens").hidden = false;
    } else if (frame.error) {
      $("task-error").textContent = describe(frame.error);
    }
  }

  async function finish() {
    if (state.finished) return;
    state.finished = true;
    $("cancel-task").hidden = true;
    const task = await api("GET", "/api/tasks/" + state.taskId + "/");
    $("result").textContent = resultText(task.result);
    $("task-failure").textContent = task.error ? task.error.code + ": " + task.error.message : "";
    const rows = Object.entries(task.usage || {}).map(([key, value]) => {
      const row = document.createElement("tr");
      row.dataset.key = key;
      for (const text of [key.replace(/_/g, " "), String(value)]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      return row;
    });
    $("usage").tBodies[0].replaceChildren(...rows);
    $("outcome").hidden = false;
  }

  function resultText(result) {
    if (result === null || result === undefined) return "(none)";
    if (typeof result === "string") return result;
    if (typeof result.text === "string") return result.text;
    return JSON.stringify(result, null, 2);
  }

  // ---- a person's answer to a task waiting in input_required -----------------------------

  function showQuestion(request) {
    const approval = request.kind === "approval";
    $("answer-prompt").textContent = request.prompt || "";
    $("answer-text").hidden = approval;
    $("answer-send").hidden = approval;
    $("answer-approve").hidden = !approval;
    $("answer-deny").hidden = !approval;
    $("answer-error").textContent = "";
    $("answer-form").hidden = false;
  }

  async function answer(body) {
    try {
      await api("POST", "/api/tasks/" + state.taskId + "/input/", body);
      $("answer-form").hidden = true;
      $("answer-text").value = "";
    } catch (error) {
      $("answer-error").textContent = describe(error);
    }
  }

  $("answer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    answer({ text: $("answer-text").value });
  });
  $("answer-approve").addEventListener("click", () => answer({ approve: true }));
  $("answer-deny").addEventListener("click", () => answer({ approve: false }));

  function setStatus(status) {
    if (status !== "input_required") $("answer-form").hidden = true;
    const badge = $("task-status");
    badge.textContent = status;
    badge.className = "badge " + status;
    $("cancel-task").hidden = !status || FINISHED.includes(status);
    $("cancel-task").disabled = false;
  }

  function setConnection(label) {
    const element = $("connection");
    element.textContent = label;
    element.className = "connection " + label;
  }

  // ---- the customer's notices (/ws/events/) -----------------------------------------------

  const NOTICE_KEEP = 50; // shown at most, newest first
  const PING_MS = 25000; // an application ping this often; no pong within PONG_MS: the link is dead
  const PONG_MS = 10000;
  const notices = { socket: null, lastSeq: null, retries: 0, timer: null, pingTimer: null, pongTimer: null };

  function openNotices() {
    clearTimeout(notices.timer);
    if (notices.socket) return;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // Resume after the last notice shown: nothing sent while the connection was down is lost.
    const query = notices.lastSeq === null ? "" : "?after=" + notices.lastSeq;
    const socket = new WebSocket(scheme + location.host + "/ws/events/" + query, ["bearer", store.getItem("access") || ""]);
    notices.socket = socket;
    setNoticesConnection(notices.retries ? "reconnecting" : "connecting");
    socket.onmessage = (message) => {
      if (socket !== notices.socket) return;
      clearTimeout(notices.pongTimer);
      onNotice(JSON.parse(message.data));
    };
    socket.onopen = () => {
      notices.pingTimer = setInterval(() => {
        socket.send(JSON.stringify({ type: "ping" }));
        clearTimeout(notices.pongTimer);
        notices.pongTimer = setTimeout(() => socket.close(4000), PONG_MS);
      }, PING_MS);
    };
    socket.onclose = async (event) => {
      clearInterval(notices.pingTimer);
      clearTimeout(notices.pongTimer);
      if (socket !== notices.socket) return;
      notices.socket = null;
      if (event.code === 4401 && !(await refreshAccess())) {
        showLogin();
        return;
      }
      notices.retries += 1;
      setNoticesConnection("reconnecting");
      notices.timer = setTimeout(openNotices, Math.min(5000, 250 * 2 ** Math.min(notices.retries - 1, 5)));
    };
  }

  function closeNotices() {
    clearTimeout(notices.timer);
    clearInterval(notices.pingTimer);
    clearTimeout(notices.pongTimer);
    const socket = notices.socket;
    notices.socket = null;
    notices.lastSeq = null;
    notices.retries = 0;
    $("notices").replaceChildren();
    setNoticesConnection("");
    if (socket) socket.close(1000);
  }

  function onNotice(frame) {
    if (frame.type === "ready") {
      notices.lastSeq = frame.seq;
      notices.retries = 0;
      setNoticesConnection("live");
      return;
    }
    if (frame.type === "gap") {
      addNotice(null, "warning", "Some notices were no longer kept while the connection was down");
      return;
    }
    if (frame.type === "pong" || typeof frame.seq !== "number") return;
    if (notices.lastSeq !== null && frame.seq <= notices.lastSeq) return; // never shown twice
    notices.lastSeq = frame.seq;
    addNotice(frame.seq, noticeLevel(frame), noticeText(frame));
    if (frame.type === "task_status" && frame.task === state.taskId) setStatus(frame.status);
  }

  function noticeLevel(frame) {
    if (frame.notification && frame.notification.level) return frame.notification.level;
    return frame.type === "task_status" && ["failed", "timed_out"].includes(frame.status) ? "warning" : "info";
  }

  function noticeText(frame) {
    if (frame.type === "task_status") return "Task #" + frame.task + " is " + frame.status;
    if (frame.notification) return frame.notification.message;
    return JSON.stringify(frame);
  }

  function addNotice(seq, level, text) {
    const item = document.createElement("li");
    item.className = level;
    if (seq !== null) item.dataset.seq = seq;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = seq === null ? "" : "#" + seq;
    item.append(meta, text);
    const list = $("notices");
    list.prepend(item);
    while (list.children.length > NOTICE_KEEP) list.lastElementChild.remove();
  }

  function setNoticesConnection(label) {
    const element = $("notices-connection");
    element.textContent = label;
    element.className = "connection " + label;
  }

  window.addEventListener("online", () => {
    if (!notices.socket && store.getItem("access") && !$("app-section").hidden) openNotices();
  });

  // ---- rendering one stored event ----------------------------------------------------------

  const KIND_LABELS = {
    message: "message",
    tool_call: "tool call",
    tool_result: "tool result",
    code_execution: "code",
    status: "status",
    usage: "usage",
    error: "error",
    log: "log",
    input_request: "asks you",
    input_response: "answer",
  };

  function renderEvent(event) {
    const item = document.createElement("li");
    item.className = "event event-" + event.type;
    item.dataset.seq = event.seq;
    item.dataset.type = event.type;
    const meta = document.createElement("div");
    meta.className = "meta";
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = KIND_LABELS[event.type] || event.type;
    meta.append(kind, "#" + event.seq + (event.source ? " · " + event.source : ""));
    item.appendChild(meta);
    for (const block of body(event)) item.appendChild(block);
    $("events").appendChild(item);
    if (event.type === "message") {
      delete state.tokens[event.source];
      $("live-tokens").hidden = Object.keys(state.tokens).length === 0;
    }
    if (event.type === "status" && event.content && event.content.status) setStatus(event.content.status);
    if (event.type === "input_request") showQuestion(event.content || {});
    item.scrollIntoView({ block: "nearest" });
  }

  function pre(text, className) {
    const element = document.createElement("pre");
    if (className) element.className = className;
    element.textContent = text;
    return element;
  }

  function body(event) {
    const c = event.content || {};
    switch (event.type) {
      case "message":
        return [pre(typeof c.text === "string" ? c.text : JSON.stringify(c))];
      case "tool_call":
        return [pre(c.name + "(" + JSON.stringify(c.arguments) + ")")];
      case "tool_result":
        return [pre((c.is_error ? "error from " : "") + c.name + " → " + c.content)];
      case "code_execution":
        return [pre(c.code || "", "code"), pre((c.output || "") + "\n[exit " + c.exit_code + "]", "output")];
      case "status":
        return [pre(c.status || "")];
      case "error":
        return [pre((c.code ? c.code + ": " : "") + (c.message || JSON.stringify(c)))];
      case "usage":
        return [pre(Object.entries(c).map(([k, v]) => k + "=" + v).join("  "))];
      default:
        return [pre(typeof c.text === "string" ? c.text : JSON.stringify(c))];
    }
  }

  // ---- start ------------------------------------------------------------------------------

  if (store.getItem("access")) {
    showApp().catch(showLogin);
  } else {
    showLogin();
  }
})();
