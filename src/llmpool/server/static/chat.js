// llmpool.server's chat page: one session followed over /ws/chat/{id} (docs/server.md).
//
// It speaks the protocol as `llmpool chat` does (src/llmpool/_cli/chat/): every socket
// starts with a `resume` from the last session `seq` seen, so a reconnect shows exactly the
// frames it missed, nothing twice; a socket that ends is reopened with exponential backoff
// and jitter on the close codes that call for it (1005, 1006, 1011, 1012, 1013; 1013 after
// the server's retry_after_ms), never on 1008 or 1009. Opening a session loads its
// transcript (GET /api/sessions/{id}) and resumes after its last_seq.
//
// Model output, error messages and session ids reach the page as text only (textContent,
// Text nodes, new Option): nothing here parses a string as HTML.
"use strict";

const BACKOFF = { initial: 0.5, maximum: 10, jitter: 0.5 }; // seconds: ReconnectPolicy's
const RECONNECT = new Set([1005, 1006, 1011, 1012, 1013]);
const MEANING = {
  1000: "the server closed the connection",
  1001: "the server closed the idle connection",
  1005: "the connection closed without a status",
  1006: "the connection was lost",
  1008: "the server refused the connection (policy)",
  1009: "the server refused a message too big",
  1011: "the server failed",
  1012: "the server is restarting",
  1013: "the server is at capacity",
};
// The codes a turn ends with; the others are replies to one frame, or precede a close.
const TURN_ERRORS = new Set(["queue_full", "queue_timeout", "rate_limited", "upstream_error",
  "stream_interrupted", "message_too_big", "server_shutting_down", "internal_error"]);
// Errors sent just before a close, and the close code each comes with: a connection lost
// right after one (1006: a proxy that closed its TCP side with our frames unread, the
// reset losing its close frame) is treated as closed with that code.
const CLOSING = new Map([["server_at_capacity", 1013], ["idle_timeout", 1001],
  ["unauthorized", 1008], ["server_shutting_down", 1012]]);
const ADVICE = {
  queue_full: "the server's queue is full: try again in a moment",
  queue_timeout: "the answer waited too long for a slot: try again",
  rate_limited: "the model's API is rate limiting: try again later",
  upstream_error: "the model's API failed: send the message again",
  stream_interrupted: "the answer broke off: send the message again",
  session_busy: "wait for the answer, or stop it",
  message_too_big: "shorten the message",
  server_shutting_down: "send the message again once reconnected",
  internal_error: "the server failed (its log has the details): send the message again",
  unauthorized: "enter the server's token above",
};
const POLL_MS = 1000;
const tab = window.sessionStorage; // this tab's sessions and token

const $ = (id) => document.getElementById(id);
const state = {
  session: "",
  priority: "",
  lastSeq: 0, // the last session frame seen: where a socket resumes
  turn: null, // the answer being written: {id, el, node}
  awaiting: false, // a message went out and its turn has not ended
  ws: null,
  opened: false,
  outbox: [], // frames for the socket once it is open
  attempt: 0, // reconnects in a row
  retryAfter: null, // seconds the last error frame said to wait
  closingError: null, // the error frame before a close: {code, message}
  timer: null, // the pending reconnect
  ticker: null, // its countdown on the status line
  generation: 0, // bumped by each switch: late answers about the session left are dropped
};

// -- what the page shows ----------------------------------------------------------------

function status(text, kind = "info", code = "") {
  clearInterval(state.ticker);
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
  el.dataset.code = code;
}

function countdown(what, verb, seconds, code) {
  const until = performance.now() + seconds * 1000;
  const tick = () => {
    const left = Math.max(0, (until - performance.now()) / 1000);
    $("status").textContent = `${what}: ${verb} in ${left.toFixed(1)} s`;
  };
  status("", "error", code);
  tick();
  state.ticker = setInterval(tick, 250);
}

function badge(text) {
  $("connection").textContent = text;
  $("connection").dataset.state = text;
}

function render() {
  const busy = state.turn !== null || state.awaiting;
  $("stop").disabled = !busy;
  $("send").disabled = busy;
}

function stick(change) {
  // Keep the newest text in view, unless the reader scrolled up.
  const log = $("log");
  const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  change();
  if (atEnd) log.scrollTop = log.scrollHeight;
}

function bubble(role, text) {
  const el = document.createElement("div");
  el.className = `msg ${role}`;
  const body = document.createElement("span");
  body.className = "text";
  body.append(document.createTextNode(text)); // text, never markup
  el.append(body);
  stick(() => $("log").append(el));
  return el;
}

function startTurn(id, text = "") {
  const el = bubble("assistant", text);
  el.dataset.turn = id;
  el.dataset.state = "streaming";
  state.turn = { id, el, node: el.firstChild.firstChild };
}

function endTurn(outcome, meta) {
  const { el } = state.turn;
  state.turn = null;
  state.awaiting = false;
  el.dataset.state = outcome;
  const line = document.createElement("span");
  line.className = "meta";
  line.textContent = meta;
  stick(() => el.append(line));
}

function turnOf(frame) {
  const id = String(frame.turn_id);
  if (state.turn === null || state.turn.id !== id) {
    if (state.turn !== null) endTurn("error", "(its end was not received)");
    startTurn(id);
  }
  return state.turn;
}

// -- frames from the server --------------------------------------------------------------

function take(frame) {
  // A session frame is new once: a resume that overlaps shows nothing twice.
  if (!Number.isInteger(frame.seq) || frame.seq <= state.lastSeq) return false;
  state.lastSeq = frame.seq;
  return true;
}

function feed(frame) {
  if (frame.type === "chunk" && take(frame)) {
    const turn = turnOf(frame);
    if (typeof frame.content === "string" && frame.content) {
      stick(() => turn.node.appendData(frame.content));
    }
  } else if (frame.type === "complete" && take(frame)) {
    turnOf(frame);
    const seconds = ((Number(frame.processing_time_ms) || 0) / 1000).toFixed(1);
    const tokens = frame.usage && frame.usage.total_tokens;
    if (frame.stopped) {
      endTurn("stopped", `stopped after ${seconds} s`);
    } else {
      const counted = Number.isInteger(tokens) ? `, ${tokens} tokens` : "";
      endTurn("complete", `done in ${seconds} s${counted}`);
    }
  } else if (frame.type === "error") {
    error(frame);
  } // a pong, a duplicate, or a type from a newer server: nothing to show
  render();
}

function error(frame) {
  const code = String(frame.error);
  const details = typeof frame.error_details === "object" && frame.error_details || {};
  const message = String(details.message || "");
  const after = details.retry_after_ms;
  state.retryAfter = typeof after === "number" ? after / 1000 : null;
  const endsTurn = TURN_ERRORS.has(code) && frame.turn_id != null;
  if (endsTurn && frame.seq === state.lastSeq + 1 && take(frame)) {
    turnOf(frame);
    endTurn("error", code);
  } else if (code === "invalid_message" && message.startsWith("resume:")) {
    // The server does not have our seq: it restarted and lost the session.
    const lost = state.turn || state.awaiting ? " and the answer in progress with it" : "";
    if (state.turn) endTurn("error", "(lost)");
    state.lastSeq = 0;
    send({ type: "resume", last_seq: 0 });
    status(`the server no longer has session ${state.session} (it restarted?): its history `
      + `is gone${lost}; the session starts afresh`);
    return;
  } else if (code === "resync_required") {
    if (Number.isInteger(details.last_seq)) state.lastSeq = details.last_seq;
    const missing = `frames from ${details.missing_from} are no longer kept`;
    status(`${code}: ${missing}: part of the answer is not shown`, "error", code);
    return;
  } else if (CLOSING.has(code) && (code !== "server_shutting_down" || !state.awaiting)) {
    state.closingError = { code, message }; // the close that follows says it, and what next
    return;
  } else if (["session_busy", "server_shutting_down", "message_too_big"].includes(code)) {
    state.awaiting = false; // our message was refused; a running turn goes on
  }
  let advice = ADVICE[code] || "";
  if (code === "rate_limited" && state.retryAfter !== null) {
    advice = `the model's API is rate limiting: try again in ${Math.ceil(state.retryAfter)} s`;
  }
  const what = message ? `${code}: ${message}` : code;
  status(advice ? `${what} — ${advice}` : what, "error", code);
}

// -- the socket ---------------------------------------------------------------------------

function backoff(attempt) {
  // tenacity's wait_exponential_jitter, as the terminal client: min(initial * 2**(n-1) +
  // uniform(0, jitter), maximum) seconds before the n-th attempt in a row.
  const { initial, maximum, jitter } = BACKOFF;
  return Math.min(initial * 2 ** (attempt - 1) + Math.random() * jitter, maximum);
}

function socketUrl() {
  const url = new URL(`ws/chat/${encodeURIComponent(state.session)}`, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = url.hash = "";
  if (state.priority) url.searchParams.set("priority", state.priority);
  return url.href;
}

function connect() {
  clearTimeout(state.timer);
  state.timer = null;
  if (state.ws !== null) return;
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  state.opened = false;
  badge("connecting");
  ws.onopen = () => {
    if (ws !== state.ws) return;
    state.opened = true;
    state.closingError = null;
    badge("open");
    const token = $("token").value.trim();
    if (token) ws.send(JSON.stringify({ type: "auth", token })); // browsers cannot set headers
    ws.send(JSON.stringify({ type: "resume", last_seq: state.lastSeq }));
    while (state.outbox.length) ws.send(state.outbox.shift());
    status(state.attempt
      ? `reconnected: session ${state.session} resumed after frame ${state.lastSeq}`
      : `connected: session ${state.session}`);
  };
  ws.onmessage = (event) => {
    if (ws !== state.ws || typeof event.data !== "string") return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      status("the server sent a frame that is not JSON", "error");
      return;
    }
    if (frame && typeof frame === "object") feed(frame);
  };
  ws.onclose = (event) => {
    if (ws !== state.ws) return; // a socket left behind by a switch
    state.ws = null;
    closed(event.code, event.reason);
  };
}

function closed(lost, reason) {
  state.attempt = state.opened ? 1 : state.attempt + 1;
  const err = state.closingError;
  state.closingError = null;
  const code = lost === 1006 && err ? CLOSING.get(err.code) : lost;
  const meaning = MEANING[code] || "the server closed the connection";
  const what = err
    ? `${err.code}: ${err.message || meaning}`
    : `${meaning} (${reason ? `${code}: ${reason}` : code})`;
  const label = err ? err.code : String(code);
  if (RECONNECT.has(code)) {
    const told = code === 1013 && state.retryAfter !== null; // the server said how long
    const delay = told ? state.retryAfter + Math.random() * BACKOFF.jitter : backoff(state.attempt);
    badge("reconnecting");
    countdown(what, told ? "retrying" : "reconnecting", delay, label);
    state.timer = setTimeout(connect, delay * 1000);
  } else {
    // 1008: retrying as is cannot help; 1000, 1001, 1009: an idle page holds no slot.
    badge("closed");
    state.awaiting = false;
    state.outbox = [];
    const next = code === 1008
      ? `${err && err.code === "unauthorized" ? `${ADVICE.unauthorized}; ` : ""}not retrying`
      : "the next message reconnects";
    status(`${what} — ${next}`, code === 1000 ? "info" : "error", label);
  }
  render();
}

function send(frame) {
  const text = JSON.stringify(frame);
  if (state.ws !== null && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(text);
    return;
  }
  state.outbox.push(text); // sent after the resume once (re)connected
  if (state.ws === null && state.timer === null) connect();
}

// -- sessions -----------------------------------------------------------------------------

function used() {
  try {
    const list = JSON.parse(tab.getItem("llmpool.sessions") || "[]");
    return Array.isArray(list) ? list.filter((s) => typeof s === "string") : [];
  } catch {
    return [];
  }
}

function remember(id) {
  const list = [id, ...used().filter((s) => s !== id)].slice(0, 50);
  tab.setItem("llmpool.sessions", JSON.stringify(list));
  $("sessions").replaceChildren(...list.map((s) => new Option(s, s, false, s === id)));
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `chat-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJson(path) {
  try {
    const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    return response.ok ? await response.json() : response.status;
  } catch {
    return null;
  }
}

function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((part) => (part && typeof part.text === "string" ? part.text : "")).join("");
}

async function open(id) {
  id = id.trim();
  if (!id || id.length > 128) {
    status("a session id has 1 to 128 characters", "error");
    return;
  }
  const generation = ++state.generation;
  const old = state.ws;
  state.ws = null;
  if (old !== null) old.close(1000);
  clearTimeout(state.timer);
  Object.assign(state, { session: id, lastSeq: 0, turn: null, awaiting: false, outbox: [],
    attempt: 0, retryAfter: null, closingError: null, timer: null });
  $("log").replaceChildren();
  $("session-id").textContent = id;
  remember(id);
  const url = new URL(location.href);
  url.search = url.hash = ""; // the token never stays in the address bar
  url.searchParams.set("session", id);
  if (state.priority) url.searchParams.set("priority", state.priority);
  history.replaceState(null, "", url.href);
  render();
  const body = await getJson(`api/sessions/${encodeURIComponent(id)}`);
  if (generation !== state.generation) return;
  if (body && typeof body === "object") {
    const items = (body.conversation && body.conversation.items) || [];
    for (const item of items) {
      const text = contentText(item.content);
      if ((item.role === "user" || item.role === "assistant") && text) bubble(item.role, text);
    }
    state.lastSeq = Number.isInteger(body.last_seq) ? body.last_seq : 0;
    if (body.turn) startTurn(String(body.turn.turn_id), String(body.turn.partial_text || ""));
  } // 404: a new session; 401: the socket's unauthorized says it
  render();
  connect();
}

// -- the live panel -------------------------------------------------------------------------

let polling = false;

async function poll() {
  if (polling) return;
  polling = true;
  try {
    const [metrics, stats] = await Promise.all(
      [getJson("metrics.json"), getJson("api/connection-stats")]);
    const ok = (x) => x !== null && typeof x === "object";
    const locked = stats === 401 ? "token?" : null;
    $("m-connections").textContent = ok(metrics)
      ? `${metrics.connections.active} / ${metrics.performance.max_connections}` : "–";
    $("m-queue").textContent = ok(stats) ? String(stats.queuedRequests) : locked || "–";
    $("m-inflight").textContent = ok(stats) ? String(stats.activeConnections) : locked || "–";
    $("m-retries").textContent = ok(stats) ? String(stats.retries) : locked || "–";
  } finally {
    polling = false;
  }
}

// -- wiring ---------------------------------------------------------------------------------

function sendMessage() {
  const input = $("input");
  const message = input.value;
  if (!message.trim() || $("send").disabled) return;
  input.value = "";
  bubble("user", message);
  state.awaiting = true;
  send({ type: "message", message });
  render();
}

function init() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token") ?? query.get("token"); // #token= stays out of logs
  if (given !== null) tab.setItem("llmpool.token", given);
  $("token").value = tab.getItem("llmpool.token") || "";
  state.priority = query.get("priority") || "";
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  $("stop").addEventListener("click", () => {
    if (state.turn === null) state.awaiting = false; // nothing known to run: just unlock
    send({ type: "stop" });
    render();
  });
  $("sessions").addEventListener("change", (event) => open(event.target.value));
  $("switch").addEventListener("submit", (event) => {
    event.preventDefault();
    open($("session-input").value);
    $("session-input").value = "";
  });
  $("new-session").addEventListener("click", () => open(randomId()));
  const useToken = (event) => {
    event.preventDefault();
    tab.setItem("llmpool.token", $("token").value.trim());
    open(state.session); // reload the transcript and reconnect with the new token
  };
  $("token").addEventListener("change", useToken);
  $("token-form").addEventListener("submit", useToken);
  open(query.get("session") || used()[0] || randomId());
  poll();
  setInterval(poll, POLL_MS);
}

init();
