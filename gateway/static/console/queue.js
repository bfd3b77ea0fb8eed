// The queue: conversations by view (mine, unassigned, a team, all), status and channel, longest
// waiting first, with keyset paging ("Load more" follows next_cursor) and live refreshes.
import { api } from "./api.js";
import { ago, channelIcon, h, replace } from "./dom.js";

const CHANNELS = ["sms", "whatsapp", "email", "webchat", "api"];
const previews = new Map();     // conversation id -> {seq, text}: the last message, fetched once per seq

function seenSeq(id) { return Number(localStorage.getItem(`console.seen.${id}`) || 0); }
export function markSeen(id, seq) { localStorage.setItem(`console.seen.${id}`, String(seq)); }

export class Queue {
  constructor(app, onOpen) {
    this.app = app;
    this.onOpen = onOpen;
    this.items = [];
    this.cursor = null;
    this.selected = null;
    this.timer = null;
    const saved = JSON.parse(localStorage.getItem("console.queue") || "{}");
    this.filters = { view: saved.view || "unassigned", status: saved.status || "open", channel: saved.channel || "" };
    this.list = h("ul", { class: "queue-list", "aria-label": "Conversations" });
    this.more = h("button", { type: "button", class: "ghost more", hidden: true }, "Load more");
    this.more.addEventListener("click", () => this.load(true).catch(() => {}));
    this.el = h("section", { class: "queue", "aria-label": "Queue" }, this.controls(), this.list, this.more);
  }

  controls() {
    const views = [["mine", "Mine"], ["unassigned", "Unassigned"],
      ...this.app.teams.filter((t) => this.app.me.team_ids === null || (this.app.me.team_ids || []).includes(t.id))
        .map((t) => [`team:${t.id}`, `Team: ${t.name}`]), ["all", "All I can see"]];
    const select = (name, label, options) => {
      const el = h("select", { name, "aria-label": label },
        options.map(([v, text]) => h("option", { value: v, selected: this.filters[name] === v }, text)));
      el.addEventListener("change", () => {
        this.filters[name] = el.value;
        localStorage.setItem("console.queue", JSON.stringify(this.filters));
        this.load().catch(() => {});    // a 401 already sent the page to sign-in
      });
      return el;
    };
    return h("div", { class: "filters" },
      select("view", "View", views),
      select("status", "Status", [["open", "Open"], ["snoozed", "Snoozed"], ["resolved", "Resolved"], ["", "Any status"]]),
      select("channel", "Channel", [["", "Any channel"], ...CHANNELS.map((c) => [c, c])]));
  }

  query() {
    const q = { status: this.filters.status, channel: this.filters.channel, sort: "waiting" };
    const v = this.filters.view;
    if (v === "mine") q.assignee_id = this.app.me.agent_id || 0;
    else if (v === "unassigned") { q.unassigned = "true"; q.mode = "agent"; }
    else if (v.startsWith("team:")) q.team_id = v.slice(5);
    return q;
  }

  async load(more = false) {
    const q = { ...this.query(), limit: more ? 25 : Math.max(25, Math.min(100, this.items.length)) };
    if (more) q.cursor = this.cursor;
    if (q.assignee_id === 0) { this.items = []; this.render(); return; }
    const page = await api("GET", "/conversations", { query: q });
    this.items = more ? [...this.items, ...page.conversations] : page.conversations;
    this.cursor = page.next_cursor;
    this.render();
    await Promise.all(this.items.map((c) => this.preview(c)));
  }

  /** Reload soon (several events in a burst make one request). */
  refresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load().catch(() => {}), 250);
  }

  async preview(conv) {
    const cached = previews.get(conv.id);
    if (cached && cached.seq === conv.last_seq) return;
    try {
      const page = await api("GET", `/conversations/${conv.id}/messages`, { query: { limit: 5 } });
      const last = [...page.messages].reverse().find((m) => m.kind === "message") || page.messages.at(-1);
      previews.set(conv.id, { seq: conv.last_seq, text: last ? (last.body || attachmentsLabel(last)) : "" });
      const slot = this.list.querySelector(`[data-conversation-id="${conv.id}"] .snippet`);
      if (slot) replace(slot, previews.get(conv.id).text);
    } catch { /* the list still shows the rest */ }
  }

  render() {
    replace(this.list, this.items.length ? this.items.map((c) => this.item(c))
      : h("li", { class: "empty" }, "Nothing here. New conversations appear as they arrive."));
    this.more.hidden = !this.cursor;
  }

  item(c) {
    const unread = Math.max(0, (c.last_seq || 0) - seenSeq(c.id));
    const assignee = c.assignee_id ? (this.app.agents.find((a) => a.id === c.assignee_id) || {}).name || `#${c.assignee_id}` : "unassigned";
    const el = h("li", { class: "conv" + (c.id === this.selected ? " selected" : ""), "data-testid": "conversation-item",
      "data-conversation-id": c.id, "data-assignee-id": c.assignee_id || "", tabindex: 0,
      role: "button", "aria-current": c.id === this.selected ? "true" : "false" },
    channelIcon(c.last_inbound_channel),
    h("div", { class: "meta" },
      h("div", { class: "row1" }, h("strong", { class: "name" }, c.contact_name || "Unknown contact"),
        h("span", { class: "wait", title: "waiting since" }, c.waiting_since ? ago(c.waiting_since) : "")),
      h("div", { class: "snippet" }, (previews.get(c.id) || {}).text || ""),
      h("div", { class: "row3" }, h("span", { class: `badge status-${c.status}` }, c.status),
        h("span", { class: "assignee" }, assignee),
        c.labels.map((l) => h("span", { class: "label" }, l)))),
    unread && c.id !== this.selected ? h("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread)) : null);
    const open = () => this.onOpen(c.id);
    el.addEventListener("click", open);
    el.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } });
    return el;
  }

  select(id) {
    this.selected = id;
    this.list.querySelectorAll("[data-testid=conversation-item]").forEach((li) => {
      const on = Number(li.dataset.conversationId) === id;
      li.classList.toggle("selected", on);
      li.setAttribute("aria-current", String(on));
      if (on) { const badge = li.querySelector(".unread"); if (badge) badge.remove(); }
    });
  }

  neighbour(step) {
    if (!this.items.length) return null;
    const i = this.items.findIndex((c) => c.id === this.selected);
    const next = i < 0 ? 0 : Math.min(this.items.length - 1, Math.max(0, i + step));
    return this.items[next].id;
  }
}

export function attachmentsLabel(m) {
  const atts = ((m.content || {}).attachments || []);
  return atts.length ? `[${atts.length} attachment${atts.length > 1 ? "s" : ""}] ${atts.map((a) => a.filename || a.content_type || "attachment").join(", ")}` : "";
}
