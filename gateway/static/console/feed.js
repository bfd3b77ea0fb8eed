// The realtime feed (GET /api/v1/stream) over a WebSocket: same-origin, authenticated by the
// session cookie. Reconnects with ?last_event_id= so nothing is missed; {type: "refetch"} and
// reconnects the server cannot replay make listeners reload from the API.
import { api } from "./api.js";

export class Feed {
  constructor() {
    this.listeners = new Set();
    this.lastId = null;
    this.ws = null;
    this.stopped = false;
    this.delay = 500;
    this.presence = null;
  }

  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }

  emit(event) {
    for (const fn of this.listeners) { try { fn(event); } catch (err) { console.error(err); } } }

  start() {
    this.stopped = false;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const qs = this.lastId ? `?last_event_id=${encodeURIComponent(this.lastId)}` : "";
    const ws = new WebSocket(`${proto}//${location.host}/api/v1/stream${qs}`);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; this.delay = 500; this.emit({ type: "feed.open" }); };
    ws.onmessage = (msg) => {
      let event;
      try { event = JSON.parse(msg.data); } catch { return; }
      if (event.id) this.lastId = event.id;
      if (event.type === "hello" && !this.lastId && event.last_event_id) this.lastId = event.last_event_id;
      this.emit(event);
    };
    ws.onclose = async () => {
      this.emit({ type: "feed.closed" });
      if (this.stopped) return;
      if (!opened) {
        // refused at the handshake: maybe the session ended (api() signs the page out on a 401)
        try { await api("GET", "/me"); } catch { if (this.stopped) return; }
      }
      setTimeout(() => { if (!this.stopped) this.start(); }, this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
      this.emit({ type: "refetch" });
    };
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }
}
