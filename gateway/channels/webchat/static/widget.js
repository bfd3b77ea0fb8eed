/*
 * Web chat widget for the messaging gateway. No dependencies, no build step. Embed with one tag:
 *
 *   <script src="https://chat.example.com/chat/widget.js" defer
 *           data-title="Chat with us" data-open="false"
 *           data-identity-token="(optional: signed by your server, see gateway/channels/webchat/tokens.py)"></script>
 *
 * It keeps its session token in localStorage, reconnects with backoff and resumes from the last
 * seq it saw, shows the history after a reload, quick replies and a typing indicator. Messages
 * written while offline are kept and sent (idempotently, by client_msg_id) once connected.
 * window.GatewayChat = {open(), close(), toggle(), send(text), identify(identityToken)}.
 */
(function () {
  "use strict";
  if (window.GatewayChat) return;

  var script = document.currentScript;
  var cfg = (script && script.dataset) || {};
  var base = (cfg.gateway || (script && script.src ? new URL(script.src, location.href).origin : location.origin))
    .replace(/\/+$/, "");
  var wsBase = base.replace(/^http/, "ws");
  var KEY = "gwchat:" + base;
  var PING_EVERY = 25000, PONG_WAIT = 10000, MAX_TEXT = 4096;

  var state = load();
  var messages = new Map();   // key -> {seq, cid, text, mine, author, buttons, pending, failed}
  var ws = null, ready = false, attempts = 0, reconnectTimer = null, pingTimer = null;
  var lastPong = 0, pingSentAt = 0, readSent = 0, typingSentAt = 0, typingOffTimer = null;
  var theirTyping = null, theirTypingTimer = null, seenSeq = 0, notice = "";

  function load() {
    try { var s = JSON.parse(localStorage.getItem(KEY) || "{}"); s.pending = s.pending || []; return s; }
    catch (e) { return { pending: [] }; }
  }
  function save() { try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ } }

  // ---- DOM (inside a shadow root so the host page's CSS and ours never mix) -------------------
  var host = document.createElement("div");
  host.id = "gateway-chat";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}" +
    ".launcher{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;" +
    "background:#2563eb;color:#fff;cursor:pointer;display:flex;align-items:center;justify-content:center;box-shadow:0 6px 20px rgba(0,0,0,.25);z-index:2147483000}" +
    ".panel{position:fixed;right:20px;bottom:88px;width:360px;max-width:calc(100vw - 40px);height:520px;" +
    "max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.25);" +
    "display:none;flex-direction:column;overflow:hidden;z-index:2147483000;color:#111}" +
    ".panel.open{display:flex}" +
    ".head{background:#2563eb;color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}" +
    ".head .title{font-weight:600;flex:1;font-size:15px}.head .status{font-size:12px;opacity:.85}" +
    ".head button{background:none;border:0;color:#fff;font-size:20px;cursor:pointer;line-height:1}" +
    ".dot{width:8px;height:8px;border-radius:50%;background:#f59e0b}.dot.on{background:#22c55e}" +
    ".list{flex:1;overflow-y:auto;padding:12px;background:#f8fafc;display:flex;flex-direction:column;gap:6px}" +
    ".empty{color:#64748b;font-size:13px;text-align:center;margin-top:30px}" +
    ".msg{max-width:80%;padding:8px 11px;border-radius:14px;font-size:14px;line-height:1.35;white-space:pre-wrap;" +
    "word-wrap:break-word}" +
    ".mine{align-self:flex-end;background:#2563eb;color:#fff;border-bottom-right-radius:4px}" +
    ".theirs{align-self:flex-start;background:#e2e8f0;color:#0f172a;border-bottom-left-radius:4px}" +
    ".meta{font-size:11px;opacity:.7;margin-top:2px}.pending{opacity:.6}.failed{background:#dc2626}" +
    ".via{font-size:11px;color:#64748b;align-self:flex-start;margin:-2px 0 0 4px}" +
    ".quick{display:flex;flex-wrap:wrap;gap:6px;padding:0 12px 8px;background:#f8fafc}" +
    ".quick button{border:1px solid #2563eb;color:#2563eb;background:#fff;border-radius:16px;padding:5px 11px;" +
    "font-size:13px;cursor:pointer}.quick button:hover{background:#eff6ff}" +
    ".typing{font-size:12px;color:#64748b;padding:0 14px 6px;background:#f8fafc;min-height:18px}" +
    ".notice{font-size:12px;color:#b91c1c;padding:4px 14px;background:#fef2f2}" +
    "form{display:flex;border-top:1px solid #e2e8f0;padding:8px;gap:6px;background:#fff}" +
    "textarea{flex:1;resize:none;border:1px solid #cbd5e1;border-radius:10px;padding:8px;font-size:14px;height:40px}" +
    "form button{border:0;background:#2563eb;color:#fff;border-radius:10px;padding:0 14px;font-size:14px;cursor:pointer}" +
    "</style>" +
    "<button class='launcher' aria-label='Open chat'><svg viewBox='0 0 24 24' width='28' height='28' " +
    "fill='currentColor' aria-hidden='true'><path d='M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 " +
    "0 1-2-2V6a2 2 0 0 1 2-2z'/></svg></button>" +
    "<section class='panel' role='dialog' aria-label='Chat'>" +
    "<div class='head'><span class='dot'></span><span class='title'></span><span class='status'>connecting…</span>" +
    "<button class='close' aria-label='Close chat'>&times;</button></div>" +
    "<div class='notice' hidden></div>" +
    "<div class='list' aria-live='polite'></div><div class='quick'></div><div class='typing'></div>" +
    "<form><textarea class='input' rows='1' placeholder='Write a message…' aria-label='Message'></textarea>" +
    "<button class='send' type='submit'>Send</button></form></section>";
  var $ = function (sel) { return root.querySelector(sel); };
  var panel = $(".panel"), list = $(".list"), quick = $(".quick"), typingEl = $(".typing"), input = $(".input");
  $(".title").textContent = cfg.title || "Chat with us";
  input.maxLength = MAX_TEXT;

  // ---- rendering -------------------------------------------------------------------------------
  function ordered() {
    return Array.from(messages.values()).sort(function (a, b) {
      if (a.seq && b.seq) return a.seq - b.seq;
      if (a.seq) return -1;
      if (b.seq) return 1;
      return a.order - b.order;
    });
  }

  function render() {
    var items = ordered();
    list.textContent = "";
    if (!items.length) {
      var empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = cfg.greeting || "Ask us anything — we usually answer right away.";
      list.appendChild(empty);
    }
    var lastMine = null;
    items.forEach(function (m) { if (m.mine && m.seq) lastMine = m; });
    items.forEach(function (m) {
      var el = document.createElement("div");
      el.className = "msg " + (m.mine ? "mine" : "theirs") + (m.pending ? " pending" : "") + (m.failed ? " failed" : "");
      if (m.seq) el.dataset.seq = m.seq;
      if (m.cid) el.dataset.clientMsgId = m.cid;
      el.textContent = m.text;
      if (m.failed || (m === lastMine && seenSeq >= m.seq)) {
        var meta = document.createElement("div");
        meta.className = "meta";
        meta.textContent = m.failed ? "not sent: " + m.failed : "Seen";
        el.appendChild(meta);
      }
      list.appendChild(el);
      if (!m.mine && m.channel && m.channel !== "webchat") {
        var via = document.createElement("div");
        via.className = "via";
        via.textContent = "via " + m.channel;
        list.appendChild(via);
      }
    });
    quick.textContent = "";
    var last = items[items.length - 1];
    if (last && !last.mine && last.buttons && last.buttons.length) {
      last.buttons.forEach(function (b) {
        var btn = document.createElement("button");
        btn.type = "button";
        btn.textContent = b.title;
        btn.addEventListener("click", function () { send(b.title, { reply_id: b.id, reply_title: b.title }); });
        quick.appendChild(btn);
      });
    }
    typingEl.textContent = theirTyping ? (theirTyping === "agent" ? "An agent is typing…" : "Typing…") : "";
    var n = $(".notice");
    n.hidden = !notice;
    n.textContent = notice;
    list.scrollTop = list.scrollHeight;
  }

  function setStatus(online) {
    $(".dot").className = "dot" + (online ? " on" : "");
    $(".status").textContent = online ? "online" : "connecting…";
  }

  var order = 0;
  function upsert(m) {
    var key = m.cid ? "c:" + m.cid : "s:" + m.seq;
    var prev = messages.get(key);
    m.order = prev ? prev.order : ++order;
    messages.set(key, Object.assign(prev || {}, m));
  }

  function lastSeq() {
    var max = 0;
    messages.forEach(function (m) { if (m.seq && m.seq > max) max = m.seq; });
    return max;
  }

  // ---- connection ------------------------------------------------------------------------------
  function post(path, body) {
    return fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) }).then(function (r) {
      if (!r.ok) throw new Error(path + " answered " + r.status);
      return r.json();
    });
  }

  function ensureSession() {
    var fresh = state.token && state.expires_at && Date.parse(state.expires_at) - Date.now() > 86400000;
    if (fresh) return Promise.resolve();
    return post("/chat/session", state.token ? { token: state.token } : {}).then(function (s) {
      if (s.visitor_id !== state.visitor_id) {   // a new visitor: nothing of the old one applies
        messages.clear();
        state = { pending: state.pending || [] };
      }
      state.token = s.token; state.visitor_id = s.visitor_id; state.expires_at = s.expires_at;
      save();
    });
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (ws && ws.readyState <= 1) return;
    ensureSession().then(openSocket, function (err) { notice = "Chat unavailable, retrying…"; render(); retry(); });
  }

  function openSocket() {
    ws = new WebSocket(wsBase + "/chat/ws");
    var sock = ws;
    sock.onopen = function () {
      raw({ type: "hello", token: state.token, last_seq: lastSeq(), conversation_id: state.conversation_id || null });
    };
    sock.onmessage = function (e) {
      try { handle(JSON.parse(e.data)); } catch (err) { if (window.console) console.warn("gateway chat:", err); }
    };
    sock.onclose = function (e) {
      if (sock !== ws) return;
      ready = false;
      clearInterval(pingTimer);
      setStatus(false);
      if (e.code === 4401) { state.token = null; save(); }   // bad or expired session: start a new one
      retry();
    };
  }

  function retry() {
    clearTimeout(reconnectTimer);
    var delay = Math.min(15000, 500 * Math.pow(2, attempts++)) * (0.5 + Math.random() / 2);
    reconnectTimer = setTimeout(connect, delay);
  }

  function raw(frame) {
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function startPing() {
    clearInterval(pingTimer);
    lastPong = Date.now();
    pingTimer = setInterval(function () {
      if (pingSentAt && lastPong < pingSentAt && Date.now() - pingSentAt > PONG_WAIT) {
        ws.close(); return;                       // a dead socket: onclose reconnects
      }
      pingSentAt = Date.now();
      raw({ type: "ping" });
    }, PING_EVERY);
  }

  function handle(f) {
    switch (f.type) {
      case "ready":
        ready = true; attempts = 0; notice = "";
        state.conversation_id = f.conversation_id; save();
        setStatus(true);
        startPing();
        state.pending.forEach(function (p) { raw(Object.assign({ type: "message" }, p)); });
        if (cfg.identityToken && state.identified_with !== cfg.identityToken) {
          raw({ type: "identify", token: cfg.identityToken });
        }
        break;
      case "reset":
        messages.clear();
        showPending();
        state.conversation_id = f.conversation_id; save();
        break;
      case "message":
        upsert({ seq: f.seq, cid: f.client_msg_id, text: f.text, mine: f.direction === "in",
          channel: f.channel, buttons: f.buttons, pending: false, failed: null });
        if (f.direction === "out") theirTyping = null;
        markRead();
        break;
      case "ack":
        dropPending(f.client_msg_id);
        upsert({ cid: f.client_msg_id, seq: f.seq, pending: false, mine: true });
        if (f.conversation_id) state.conversation_id = f.conversation_id;
        break;
      case "typing":
        theirTyping = f.state === "on" ? f.who : null;
        clearTimeout(theirTypingTimer);
        if (theirTyping) theirTypingTimer = setTimeout(function () { theirTyping = null; render(); },
          (f.ttl || 30) * 1000);
        break;
      case "read":
        seenSeq = Math.max(seenSeq, f.seq || 0);
        break;
      case "identified":
        state.identified_with = cfg.identityToken || null; save();
        break;
      case "pong":
        lastPong = Date.now();
        break;
      case "error":
        onError(f);
        break;
    }
    render();
  }

  function onError(f) {
    if (f.client_msg_id && (f.code === "rate_limited" || f.code === "unavailable")) {
      var p = state.pending.filter(function (x) { return x.client_msg_id === f.client_msg_id; })[0];
      if (p) setTimeout(function () { raw(Object.assign({ type: "message" }, p)); }, ((f.retry_after || 1) * 1000) + 200);
      return;
    }
    if (f.client_msg_id) {                      // rejected for good (too long, invalid)
      dropPending(f.client_msg_id);
      upsert({ cid: f.client_msg_id, failed: f.message, pending: false, mine: true });
      return;
    }
    notice = f.message || f.code;
  }

  function showPending() {
    state.pending.forEach(function (p) { upsert({ cid: p.client_msg_id, text: p.text, mine: true, pending: true }); });
  }

  function dropPending(cid) {
    state.pending = state.pending.filter(function (p) { return p.client_msg_id !== cid; });
    save();
  }

  function markRead() {
    if (!panel.classList.contains("open") || document.visibilityState !== "visible") return;
    var max = 0;
    messages.forEach(function (m) { if (!m.mine && m.seq > max) max = m.seq; });
    if (max > readSent && raw({ type: "read", seq: max })) readSent = max;
  }

  // ---- sending -----------------------------------------------------------------------------------
  function newId() { return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8); }

  // What the server cannot store (NUL, a lone surrogate from a cut emoji) is cleaned here, as the
  // server would refuse the message for good (an error frame with its client_msg_id).
  function storable(text) {
    return text.replace(/\u0000/g, "")
      .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(^|[^\ud800-\udbff])[\udc00-\udfff]/g,
        function (m, before) { return (before || "") + "\ufffd"; });
  }

  function send(text, extra) {
    text = storable(String(text || "").slice(0, MAX_TEXT));   // after the cut: it may split a pair
    if (!text.trim()) return;
    var frame = Object.assign({ client_msg_id: newId(), text: text }, extra || {});
    state.pending.push(frame); save();
    upsert({ cid: frame.client_msg_id, text: text, mine: true, pending: true });
    render();
    typing(false);
    if (ready) raw(Object.assign({ type: "message" }, frame));
  }

  function typing(on) {
    clearTimeout(typingOffTimer);
    if (on) {
      if (Date.now() - typingSentAt > 3000 && ready) { raw({ type: "typing", state: "on" }); typingSentAt = Date.now(); }
      typingOffTimer = setTimeout(function () { typing(false); }, 5000);
    } else if (typingSentAt) {
      typingSentAt = 0;
      raw({ type: "typing", state: "off" });
    }
  }

  // ---- wiring --------------------------------------------------------------------------------------
  function openPanel() { panel.classList.add("open"); input.focus(); markRead(); }
  function closePanel() { panel.classList.remove("open"); }
  $(".launcher").addEventListener("click", function () {
    panel.classList.contains("open") ? closePanel() : openPanel();
  });
  $(".close").addEventListener("click", closePanel);
  $("form").addEventListener("submit", function (e) { e.preventDefault(); send(input.value); input.value = ""; });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(input.value); input.value = ""; }
  });
  input.addEventListener("input", function () { typing(!!input.value); });
  document.addEventListener("visibilitychange", markRead);
  window.addEventListener("online", connect);

  window.GatewayChat = {
    open: openPanel, close: closePanel, send: send,
    toggle: function () { panel.classList.contains("open") ? closePanel() : openPanel(); },
    identify: function (token) { cfg.identityToken = token; raw({ type: "identify", token: token }); }
  };

  function start() {
    document.body.appendChild(host);
    showPending();
    render();
    if (cfg.open === "true") openPanel();
    connect();
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
