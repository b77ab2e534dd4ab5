// The notices panel: the customer's stream /ws/events/ (task status changes, broadcasts, killswitch notices),
// newest first. After a dropped connection it resumes after the last notice it showed (?after=SEQ): nothing sent
// meanwhile is lost or shown twice. An application ping every 25 s; no answer in 10 s means the link is dead.
(function () {
  "use strict";
  const panel = document.getElementById("notices-panel");
  if (!panel) return;
  const KEEP = 50, PING_MS = 25000, PONG_MS = 10000;
  const list = document.getElementById("notices");
  const connection = document.getElementById("notices-connection");
  const notices = { socket: null, lastSeq: null, retries: 0, timer: null, pingTimer: null, pongTimer: null, token: null };

  function setConnection(label) {
    connection.textContent = label;
    connection.className = "connection " + label;
  }

  async function token(fresh) {
    if (notices.token && !fresh) return notices.token;
    const response = await fetch(panel.dataset.tokenUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.redirected || !response.ok) throw new Error("signed out");
    notices.token = (await response.json()).access;
    return notices.token;
  }

  async function open() {
    clearTimeout(notices.timer);
    if (notices.socket) return;
    let access;
    try {
      access = await token(false);
    } catch (e) {
      return retry();
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const query = notices.lastSeq === null ? "" : "?after=" + notices.lastSeq;
    const socket = new WebSocket(scheme + location.host + "/ws/events/" + query, ["bearer", access]);
    notices.socket = socket;
    setConnection(notices.retries ? "reconnecting" : "connecting");
    socket.onmessage = (message) => {
      if (socket !== notices.socket) return;
      clearTimeout(notices.pongTimer);
      onFrame(JSON.parse(message.data));
    };
    socket.onopen = () => {
      notices.pingTimer = setInterval(() => {
        socket.send(JSON.stringify({ type: "ping" }));
        clearTimeout(notices.pongTimer);
        notices.pongTimer = setTimeout(() => socket.close(4000), PONG_MS);
      }, PING_MS);
    };
    socket.onclose = (event) => {
      clearInterval(notices.pingTimer);
      clearTimeout(notices.pongTimer);
      if (socket !== notices.socket) return;
      notices.socket = null;
      if (event.code === 4401) notices.token = null; // expired: the next try fetches a new one
      retry();
    };
  }

  function retry() {
    notices.retries += 1;
    setConnection("reconnecting");
    notices.timer = setTimeout(open, Math.min(5000, 250 * 2 ** Math.min(notices.retries - 1, 5)));
  }

  function onFrame(frame) {
    if (frame.type === "ready") {
      notices.lastSeq = frame.seq;
      notices.retries = 0;
      setConnection("live");
      return;
    }
    if (frame.type === "gap") {
      add(null, "warning", "Some notices were no longer kept while the connection was down");
      return;
    }
    if (frame.type === "pong" || typeof frame.seq !== "number") return;
    if (notices.lastSeq !== null && frame.seq <= notices.lastSeq) return; // never shown twice
    notices.lastSeq = frame.seq;
    add(frame.seq, level(frame), text(frame));
  }

  function level(frame) {
    if (frame.notification && frame.notification.level) return frame.notification.level;
    return frame.type === "task_status" && ["failed", "timed_out"].includes(frame.status) ? "warning" : "info";
  }

  function text(frame) {
    if (frame.type === "task_status") return "Run #" + frame.task + " is " + frame.status;
    if (frame.notification) return frame.notification.message;
    return JSON.stringify(frame);
  }

  function add(seq, kind, message) {
    const item = document.createElement("li");
    item.className = kind;
    if (seq !== null) item.dataset.seq = seq;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = seq === null ? "" : "#" + seq;
    item.append(meta, " ", message);
    list.prepend(item);
    while (list.children.length > KEEP) list.lastElementChild.remove();
  }

  window.addEventListener("online", () => { if (!notices.socket) open(); });
  open();
})();
