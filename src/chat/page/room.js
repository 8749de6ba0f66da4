// Served at /static/room.js (Content-Type: text/javascript; charset=utf-8).
// Loaded by room.html (GET /chat/<room>/). Speaks only the Django Channels
// ChatConsumer protocol, so it works against roomcast and the seed app alike:
//   connect  ws(s)://<host>/ws/chat/<room>/ (with the page's ?token=, if any)
//   send     {"message": <text>}
//   receive  {"message": <any JSON value>}  broadcast to the room, sender included
//            {"error": "<plain words>"}     to the sender only (roomcast)
// Everything received is rendered with textContent: a message is text, never HTML.
"use strict";
(function () {
  // Channels' group-name alphabet; "chat_" + room stays under its 100-char limit.
  const ROOM_RE = /^[A-Za-z0-9_.-]{1,95}$/;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 30_000;
  // A connection that stayed up this long counts as healthy: back-off starts over.
  const STABLE_MS = 5_000;
  // About a quarter of an hour of trying before the page stops on its own.
  const MAX_ATTEMPTS = 40;
  const MAX_LOG_ITEMS = 1_000;

  const $ = (id) => document.getElementById(id);
  const badge = $("state");
  const retryButton = $("retry");
  const logWrap = $("log-wrap");
  const log = $("log");
  const empty = $("empty");
  const form = $("composer");
  const input = $("input");
  const sendButton = $("send");

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });

  const room = roomFromPath(location.pathname);
  let socket = null;
  let state = "connecting";
  let attempt = 0;          // failed tries since the last healthy connection
  let openedAt = 0;
  let everLive = false;
  let retryTimer = 0;
  let retryAt = 0;
  let countdownTimer = 0;
  let leaving = false;
  let unread = 0;
  let hadFocus = false;
  // JSON of the values this page sent and has not yet seen come back; the relay
  // echoes to the sender in send order, which is how "mine" is recognised.
  let pending = [];

  // ---------- start ----------

  if (room.ok) {
    $("room-name").textContent = room.name;
    input.placeholder = "Connecting\u2026";
    updateTitle();
    connect();
  } else {
    $("room-name").textContent = room.name || "(none)";
    document.title = "Invalid room \u00b7 roomcast";
    setState("closed", "Invalid room name");
    addError(room.problem);
  }

  // A small read-only handle for debugging from the console (and the browser test).
  window.roomcast = Object.freeze({
    room: room.name,
    get state() { return state; },
    get socket() { return socket; },
  });

  // ---------- connection ----------

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // A join token in the page's own URL (/chat/<room>/?token=...), as a
    // Django template links to it, goes on to the WebSocket.
    const token = new URLSearchParams(location.search).get("token");
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    return `${scheme}//${location.host}/ws/chat/${room.name}/${query}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = 0;
    if (socket) return;
    setState(everLive || attempt > 0 ? "reconnecting" : "connecting");

    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      setState("closed", String(e && e.message || e));
      addError("Could not open a WebSocket: " + (e && e.message || e));
      return;
    }
    socket = ws;

    ws.addEventListener("open", () => {
      if (ws !== socket) return;
      openedAt = Date.now();
      if (everLive) addNote("Reconnected. Messages sent while you were away are not shown.");
      everLive = true;
      setState("live");
    });

    ws.addEventListener("message", (ev) => {
      if (ws !== socket) return;
      receive(ev.data);
    });

    ws.addEventListener("close", (ev) => {
      if (ws !== socket) return;
      socket = null;
      pending = [];
      if (leaving) return;
      if (state === "live") addNote("Disconnected: " + describeClose(ev) + ".");
      const wasStable = openedAt && Date.now() - openedAt >= STABLE_MS;
      openedAt = 0;
      if (wasStable) attempt = 0;
      scheduleRetry();
    });
    // "error" is always followed by "close", which does the work.
  }

  function scheduleRetry() {
    attempt += 1;
    if (attempt > MAX_ATTEMPTS) {
      setState("closed", `Gave up after ${MAX_ATTEMPTS} attempts`);
      addNote("Stopped trying to reconnect. Press \u201cRetry now\u201d or reload the page.");
      return;
    }
    // Exponential back-off with "equal jitter": half fixed, half random, so a
    // room full of pages doesn't hammer a restarting relay in lock-step.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    retryAt = Date.now() + delay;
    retryTimer = setTimeout(connect, delay);
    countdownTimer = setInterval(renderState, 250);
    setState("reconnecting");
  }

  function retryNow() {
    if (!room.ok || socket) return;
    if (state === "closed") attempt = 0;
    connect();
  }

  function describeClose(ev) {
    const reason = ev.reason ? ` (${ev.reason})` : "";
    switch (ev.code) {
      case 1000: return "closed by the relay" + reason;
      case 1001: return "the relay is restarting or going away" + reason;
      case 1002: return "protocol error" + reason;
      case 1006: return "the connection dropped";
      case 1007: return "the relay rejected invalid text" + reason;
      case 1008: return "closed by the relay's policy" + reason;
      case 1009: return "a message was too big for the relay" + reason;
      case 1011: return "the relay hit an internal error" + reason;
      default: return `closed (code ${ev.code})` + reason;
    }
  }

  // ---------- state ----------

  function setState(next, detail) {
    state = next;
    badge.dataset.state = next;
    if (detail) badge.title = detail; else badge.removeAttribute("title");
    if (next !== "reconnecting" || !retryTimer) {
      clearInterval(countdownTimer);
      countdownTimer = 0;
    }
    renderState();

    const live = next === "live";
    if (!live && document.activeElement === input) hadFocus = true;
    input.disabled = !live;
    input.placeholder = live ? `Message #${room.name}`
      : next === "closed" ? "Not connected"
      : "Waiting for the relay\u2026";
    updateSendButton();
    if (live && hadFocus) { hadFocus = false; input.focus(); }
    retryButton.hidden = !((next === "reconnecting" && retryTimer) || (next === "closed" && room.ok));
  }

  function renderState() {
    let label;
    switch (state) {
      case "live": label = "Live"; break;
      case "connecting": label = "Connecting\u2026"; break;
      case "closed": label = "Closed"; break;
      default:
        if (retryTimer) {
          const secs = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
          label = `Reconnecting in ${secs}s \u00b7 try ${attempt}`;
        } else {
          label = `Reconnecting\u2026 \u00b7 try ${attempt}`;
        }
    }
    if (badge.textContent !== label) badge.textContent = label;
  }

  // ---------- receiving ----------

  function receive(data) {
    if (typeof data !== "string") {
      addNote("The relay sent a binary frame; ignored.");
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (_) {
      addError("The relay sent something that is not JSON: " + clip(data));
      return;
    }
    if (frame !== null && typeof frame === "object" && !Array.isArray(frame)) {
      if (Object.prototype.hasOwnProperty.call(frame, "message")) {
        addMessage(frame.message);
        return;
      }
      if (Object.prototype.hasOwnProperty.call(frame, "error")) {
        addError(typeof frame.error === "string" ? frame.error : JSON.stringify(frame.error));
        return;
      }
    }
    addNote("Unrecognised frame from the relay: " + clip(data));
  }

  function addMessage(value) {
    const key = JSON.stringify(value);
    const mine = pending.indexOf(key);
    if (mine >= 0) pending.splice(mine, 1);

    const li = document.createElement("li");
    li.className = mine >= 0 ? "msg mine" : "msg";
    const bubble = document.createElement("p");
    bubble.className = "bubble";
    if (typeof value === "string") {
      bubble.textContent = value;
    } else {
      // Not a string: show the JSON itself, still as text.
      bubble.classList.add("json");
      bubble.textContent = key;
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    if (mine >= 0) meta.append("You \u00b7 ");
    meta.append(timeElement());
    li.append(bubble, meta);
    append(li, mine >= 0);

    if (document.hidden) { unread += 1; updateTitle(); }
  }

  function addError(text) {
    const li = document.createElement("li");
    li.className = "note error";
    li.setAttribute("role", "alert");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = "Error";
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(label, body, timeElement());
    append(li, true);
  }

  function addNote(text) {
    const li = document.createElement("li");
    li.className = "note";
    li.append(text, timeElement());
    append(li, false);
  }

  function append(li, forceScroll) {
    const nearBottom = logWrap.scrollHeight - logWrap.scrollTop - logWrap.clientHeight < 120;
    empty.hidden = true;
    log.append(li);
    while (log.childElementCount > MAX_LOG_ITEMS) log.firstElementChild.remove();
    if (nearBottom || forceScroll) logWrap.scrollTop = logWrap.scrollHeight;
  }

  function timeElement() {
    const now = new Date();
    const t = document.createElement("time");
    t.dateTime = now.toISOString();
    t.title = now.toLocaleString();
    t.textContent = timeFmt.format(now);
    return t;
  }

  // ---------- sending ----------

  function send() {
    const text = input.value;
    if (text.trim() === "" || state !== "live" || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ message: text }));
    pending.push(JSON.stringify(text));
    if (pending.length > 200) pending.shift();
    input.value = "";
    autosize();
    updateSendButton();
  }

  function updateSendButton() {
    sendButton.disabled = state !== "live" || input.value.trim() === "";
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = input.scrollHeight + 2 + "px";
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); send(); input.focus(); });
  input.addEventListener("keydown", (ev) => {
    // Enter sends; Shift+Enter is a new line; leave IME composition alone.
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      send();
    }
  });
  input.addEventListener("input", () => { autosize(); updateSendButton(); });
  retryButton.addEventListener("click", retryNow);

  // ---------- page life ----------

  // Back online or back in view: don't sit out the rest of a long back-off.
  window.addEventListener("online", () => { if (retryTimer) retryNow(); });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    unread = 0;
    updateTitle();
    if (retryTimer) retryNow();
  });
  window.addEventListener("pagehide", () => {
    leaving = true;
    if (socket) socket.close(1000);
  });
  window.addEventListener("pageshow", (ev) => {
    // Restored from the back/forward cache: the old socket is gone.
    if (ev.persisted && room.ok) { leaving = false; socket = null; attempt = 0; connect(); }
  });

  // ---------- helpers ----------

  function roomFromPath(path) {
    const m = /^\/chat\/([^/]*)\/?$/.exec(path);
    let name = m ? m[1] : "";
    try { name = decodeURIComponent(name); } catch (_) { /* keep it raw */ }
    if (!m || name === "") return { ok: false, name, problem: "No room in this address. Pick one on the start page." };
    if (!ROOM_RE.test(name)) {
      return { ok: false, name, problem: "Not a valid room name: use 1 to 95 letters, digits, _ - or ." };
    }
    return { ok: true, name };
  }

  function updateTitle() {
    if (!room.ok) return;
    document.title = (unread ? `(${unread}) ` : "") + `#${room.name} \u00b7 roomcast`;
  }

  function clip(s) {
    return s.length > 200 ? s.slice(0, 200) + "\u2026" : s;
  }
})();
