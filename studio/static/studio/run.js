// The run page, live: follows /ws/tasks/{id}/ while the run is not finished. Each stored event that arrives
// makes the page fetch its live part again from the server (which renders the transcript: markdown, folded
// tool calls), so what is shown is always what is stored. On a dropped connection it reconnects by itself
// with {"after": last seq seen}: nothing is lost or shown twice. Streamed tokens show as they come.
// A run waiting for a person shows its question with an answer box (or approve/deny buttons); what is typed
// there survives the refreshes, and a new question is announced to screen readers. The box to continue the
// conversation (a new run on the thread) is part of the live part, shown once the run has finished.
(function () {
  "use strict";
  const FINISHED = ["succeeded", "failed", "cancelled", "timed_out"];
  const live = document.getElementById("run-live");
  if (!live) return;
  const tokensBox = document.getElementById("live-tokens");
  const connection = document.getElementById("connection");
  const taskId = live.dataset.task;
  const runState = () => document.getElementById("run-state");
  const state = {
    lastSeq: Number(runState().dataset.lastSeq || 0),
    finished: runState().dataset.finished === "1",
    socket: null, retries: 0, timer: null, refreshTimer: null, token: null, tokens: {},
    askedSeq: document.getElementById("input-request")?.dataset.seq || null,
  };
  const announcer = document.getElementById("run-announce");

  function announceQuestion() {
    const asking = document.getElementById("input-request");
    if (!asking) { state.askedSeq = null; return; }
    if (asking.dataset.seq === state.askedSeq) return;
    state.askedSeq = asking.dataset.seq;
    const heading = asking.querySelector("h2")?.textContent || "The run asks you";
    announcer.textContent = heading + ": " + (document.getElementById("input-question")?.textContent || "");
  }

  function setConnection(label) {
    connection.textContent = label;
    connection.className = "connection " + label;
  }

  async function accessToken(fresh) {
    if (state.token && !fresh) return state.token;
    const response = await fetch(live.dataset.tokenUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.redirected || !response.ok) throw new Error("signed out");
    state.token = (await response.json()).access;
    return state.token;
  }

  function refresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(async () => {
      try {
        const response = await fetch(live.dataset.liveUrl, { credentials: "same-origin" });
        if (!response.ok) return;
        const open = [...live.querySelectorAll("details[open]")].map((d) => d.closest("[data-seq]")?.dataset.seq);
        // an answer being typed stays (with its focus) while the same question is shown; so does a next
        // message typed in the continue box of a finished run
        const typing = document.getElementById("answer-text");
        const draft = typing && { seq: state.askedSeq, value: typing.value, focused: document.activeElement === typing };
        const next = document.querySelector("#continue-form textarea");
        const nextDraft = next && { value: next.value, focused: document.activeElement === next };
        live.innerHTML = await response.text();
        for (const seq of open) live.querySelector(`[data-seq="${seq}"] details`)?.setAttribute("open", "");
        const box = document.getElementById("answer-text");
        if (draft && box && document.getElementById("input-request")?.dataset.seq === draft.seq) {
          box.value = draft.value;
          if (draft.focused) box.focus();
        }
        const nextBox = document.querySelector("#continue-form textarea");
        if (nextDraft && nextBox) {
          nextBox.value = nextDraft.value;
          if (nextDraft.focused) nextBox.focus();
        }
        announceQuestion();
        const threadRuns = document.getElementById("thread-runs-next");
        if (threadRuns) document.getElementById("thread-runs").replaceWith(threadRuns.content.cloneNode(true));
        if (window.htmx) window.htmx.process(live);
        document.getElementById("transcript").lastElementChild?.scrollIntoView({ block: "nearest" });
      } catch (e) {
        /* the server is away: the reconnect fetches again */
      }
    }, 120);
  }

  async function connect() {
    clearTimeout(state.timer);
    let token;
    try {
      token = await accessToken(state.retries > 0 && !state.token);
    } catch (e) {
      return scheduleReconnect();
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // The token travels as a subprotocol, not in the URL (no access logs with tokens).
    const socket = new WebSocket(scheme + location.host + "/ws/tasks/" + taskId + "/", ["bearer", token]);
    state.socket = socket;
    setConnection(state.retries ? "reconnecting" : "connecting");
    socket.onopen = () => {
      socket.send(JSON.stringify({ after: state.lastSeq }));
      state.retries = 0;
      setConnection("live");
    };
    socket.onmessage = (message) => socket === state.socket && onFrame(JSON.parse(message.data));
    socket.onclose = (event) => {
      if (socket !== state.socket) return;
      state.socket = null;
      if (event.code === 1000 || state.finished) {
        setConnection(state.finished ? "" : "closed");
        refresh();
      } else if (event.code === 4404) {
        setConnection("not found");
      } else {
        if (event.code === 4401) state.token = null;
        scheduleReconnect();
      }
    };
  }

  function scheduleReconnect() {
    state.retries += 1;
    setConnection("reconnecting");
    state.timer = setTimeout(connect, Math.min(5000, 250 * 2 ** Math.min(state.retries - 1, 5)));
  }

  function onFrame(frame) {
    if (frame.type === "event") {
      if (frame.event.seq <= state.lastSeq) return; // never twice
      state.lastSeq = frame.event.seq;
      if (frame.event.type === "message") {
        delete state.tokens[frame.event.source];
        showTokens();
      }
      refresh();
    } else if (frame.type === "status") {
      const badge = document.getElementById("task-status");
      if (badge) { badge.textContent = frame.status; badge.className = "badge " + frame.status; }
      if (FINISHED.includes(frame.status)) {
        state.finished = true;
        state.tokens = {};
        showTokens();
        refresh();
      }
    } else if (frame.type === "token") {
      state.tokens[frame.source] = (state.tokens[frame.source] || "") + frame.text;
      showTokens();
    }
  }

  function showTokens() {
    const entries = Object.entries(state.tokens);
    tokensBox.hidden = entries.length === 0;
    tokensBox.textContent = entries.map(([source, text]) => source + " is writing: " + text).join("\n");
  }

  // After an answer is sent (htmx swaps the live part): a refusal takes the focus; once taken, the focus
  // rests on the live part itself (it stays while the resumed run refreshes it) and "sent" is announced.
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target !== live) return;
    state.askedSeq = document.getElementById("input-request")?.dataset.seq || null;
    const refused = document.getElementById("answer-error");
    if (refused) return refused.focus();
    const sent = document.getElementById("answer-sent");
    if (sent) {
      announcer.textContent = sent.textContent;
      live.focus();
    }
  });

  window.addEventListener("online", () => { if (!state.finished && !state.socket) connect(); });
  if (!state.finished) connect();
})();
