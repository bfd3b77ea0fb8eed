// One conversation: the whole cross-channel thread, live; the composer (reply or private note,
// channel picker, canned responses with "/", attachments by URL, Enter to send, Idempotency-Key);
// and the actions (claim, assign, team, labels, snooze, resolve with survey, reopen, hand back).
import { api, post } from "./api.js";
import { channelIcon, h, icon, replace, toast, when } from "./dom.js";
import { attachmentsLabel, markSeen } from "./queue.js";

const AUTHORS = { customer: "Customer", bot: "Bot", agent: "Agent", system: "System" };

function newKey() {
  return (crypto.randomUUID && crypto.randomUUID()) || `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

export class Conversation {
  constructor(app, id, onChange) {
    this.app = app;
    this.id = id;
    this.onChange = onChange;
    this.conv = null;
    this.messages = new Map();
    this.firstSeq = null;
    this.lastSeq = 0;
    this.noteMode = false;
    this.pendingKey = null;
    this.canned = null;
    this.typingTimer = null;
    this.thread = h("ol", { class: "thread", "aria-label": "Messages", "aria-live": "polite" });
    this.earlier = h("button", { type: "button", class: "ghost more", hidden: true }, "Load earlier messages");
    this.earlier.addEventListener("click", () => this.loadEarlier());
    this.head = h("div", { class: "conv-head" });
    this.actions = h("div", { class: "actions", role: "toolbar", "aria-label": "Conversation actions" });
    this.typing = h("div", { class: "typing", "aria-live": "polite" });
    this.composer = this.buildComposer();
    this.el = h("section", { class: "conversation", "aria-label": "Conversation" },
      this.head, this.actions, h("div", { class: "scroll" }, this.earlier, this.thread), this.typing, this.composer);
  }

  async load() {
    const [conv, page] = await Promise.all([
      api("GET", `/conversations/${this.id}`), api("GET", `/conversations/${this.id}/messages`, { query: { limit: 50 } })]);
    this.conv = conv;
    this.renderHead();
    this.add(page.messages);
    this.earlier.hidden = !page.has_more_before;
    this.loadChannels();
    this.scrollDown();
  }

  // -- the thread ---------------------------------------------------------------------------

  add(messages, atTop = false) {
    const fresh = messages.filter((m) => !this.messages.has(m.id));
    for (const m of fresh) {
      this.messages.set(m.id, m);
      this.firstSeq = this.firstSeq === null ? m.seq : Math.min(this.firstSeq, m.seq);
      this.lastSeq = Math.max(this.lastSeq, m.seq);
    }
    const nodes = fresh.sort((a, b) => a.seq - b.seq).map((m) => this.message(m));
    if (atTop) this.thread.prepend(...nodes);
    else this.thread.append(...nodes);
    markSeen(this.id, Math.max(this.lastSeq, (this.conv && this.conv.last_seq) || 0));
  }

  message(m) {
    const author = m.kind === "note" ? "Private note" : m.kind === "event" ? "Event"
      : m.author_type === "agent" ? `Agent ${(this.app.agents.find((a) => a.id === m.author_id) || {}).name || ""}`.trim()
        : AUTHORS[m.author_type] || (m.direction === "in" ? "Customer" : "Outbound");
    const atts = ((m.content || {}).attachments || []).map((a, i) => this.attachment(m, a, i));
    const kind = m.kind === "note" ? "note" : m.kind === "event" ? "event" : m.direction === "in" ? "in" : "out";
    return h("li", { class: `msg ${kind}`, "data-testid": "message", "data-message-id": m.id, "data-seq": m.seq },
      h("div", { class: "msg-meta" }, channelIcon(m.channel), h("span", { class: "author" }, author),
        h("time", { datetime: m.created_at, title: when(m.created_at) }, new Date(m.created_at).toLocaleTimeString()),
        m.direction === "out" ? h("span", { class: `status st-${m.status}`, "data-testid": "message-status",
          title: m.error_message || "" }, m.status) : null,
        m.sender_verified === false ? h("span", { class: "unverified", "data-testid": "sender-unverified",
          title: "SPF/DKIM/DMARC did not authenticate this sender: anyone could have written this From address" },
          "unverified sender") : null),
      // what the customer got (e.g. the buttons as a numbered menu on SMS/email) when it differs from the words
      m.sent_text ? h("div", { class: "body", "data-testid": "sent-text", title: "As sent" }, m.sent_text)
        : m.body ? h("div", { class: "body" }, m.body) : null,
      atts.length ? h("div", { class: "atts" }, atts) : null);
  }

  attachment(m, a, i) {
    const name = a.filename || a.content_type || `attachment ${i + 1}`;
    if (m.direction !== "in" && a.url && !a.content_ref) {
      // a link an agent or flow attached: the gateway never fetches it, so open it where it is
      return h("a", { href: a.url, target: "_blank", rel: "noopener noreferrer", class: "att-file",
        "data-testid": "attachment" }, icon("clip"), h("span", { class: "att-name" }, name));
    }
    const url = `/api/v1/conversations/${this.id}/messages/${m.id}/attachments/${i}`;
    if (["image/png", "image/jpeg", "image/gif", "image/webp"].includes((a.content_type || "").toLowerCase())) {
      return h("a", { href: url, target: "_blank", rel: "noopener", class: "att-img" },
        h("img", { src: url, alt: name, loading: "lazy" }), h("span", { class: "att-name" }, name));
    }
    return h("a", { href: url, download: name, class: "att-file", "data-testid": "attachment" }, icon("clip"), h("span", { class: "att-name" }, name));
  }

  async loadEarlier() {
    const page = await api("GET", `/conversations/${this.id}/messages`, { query: { before_seq: this.firstSeq, limit: 50 } });
    const before = this.scrollBox().scrollHeight;
    this.add(page.messages, true);
    this.earlier.hidden = !page.has_more_before;
    this.scrollBox().scrollTop += this.scrollBox().scrollHeight - before;
  }

  scrollBox() { return this.el.querySelector(".scroll"); }
  scrollDown() { const box = this.scrollBox(); box.scrollTop = box.scrollHeight; }

  /** Events from the realtime feed that concern this conversation. */
  async onEvent(event) {
    if (event.type === "refetch") { await this.catchUp(); await this.reloadHead(); return; }
    if (Number(event.conversation_id) !== this.id) return;
    if (event.type === "message.created") await this.catchUp();
    else if (event.type === "message.status") {
      const m = this.messages.get(event.message_id);
      if (m && event.status) {
        m.status = event.status;
        const slot = this.thread.querySelector(`[data-message-id="${m.id}"] .status`);
        if (slot) { slot.className = `status st-${m.status}`; replace(slot, m.status); }
      }
    } else if (event.type === "typing") {
      if (event.agent_id && event.agent_id === this.app.me.agent_id) return;
      const who = event.who === "visitor" ? "The customer" : event.who === "bot" ? "The bot"
        : (this.app.agents.find((a) => a.id === event.agent_id) || {}).name || "An agent";
      const on = event.state ? event.state === "on" : event.typing !== false;
      replace(this.typing, on ? `${who} is typing…` : "");
      clearTimeout(this.typingTimer);
      if (on) this.typingTimer = setTimeout(() => replace(this.typing, ""), 1000 * (event.ttl || 10));
    } else if (["assignment", "conversation.updated"].includes(event.type)) {
      await this.reloadHead();
    }
  }

  async catchUp() {
    const near = this.scrollBox().scrollHeight - this.scrollBox().scrollTop - this.scrollBox().clientHeight < 80;
    for (;;) {
      const page = await api("GET", `/conversations/${this.id}/messages`, { query: { after_seq: this.lastSeq, limit: 100 } });
      this.add(page.messages);
      if (!page.has_more_after || !page.messages.length) break;
    }
    if (near) this.scrollDown();
  }

  async reloadHead() {
    try {
      this.conv = await api("GET", `/conversations/${this.id}`);
      this.renderHead();
    } catch (err) {
      if (err.status === 404) { replace(this.head, h("p", { class: "empty" }, "This conversation is no longer visible to you.")); replace(this.actions); }
    }
  }

  // -- header and actions -------------------------------------------------------------------

  renderHead() {
    const c = this.conv;
    const contact = c.contact || {};
    replace(this.head,
      h("button", { type: "button", class: "ghost back", "aria-label": "Back to the queue" }, "←"),
      h("div", {},
        h("h2", { class: "contact-name", "data-testid": "contact-name" }, contact.name || "Unknown contact"),
        h("div", { class: "sub" },
          h("span", { class: `badge status-${c.status}`, "data-testid": "conversation-status" }, c.status),
          h("span", { class: "badge" }, c.mode === "bot" ? "bot" : "agent"),
          h("span", { "data-testid": "assignee" }, c.assignee ? `Assigned to ${c.assignee.name}` : "Unassigned"),
          c.team ? h("span", {}, `Team ${c.team.name}`) : null,
          c.snoozed_until ? h("span", {}, `Snoozed until ${when(c.snoozed_until)}`) : null,
          c.labels.map((l) => h("span", { class: "label" }, l)))));
    this.head.querySelector(".back").addEventListener("click", () => { location.hash = "#/inbox"; });
    const toggle = h("button", { type: "button", class: "actions-toggle", "aria-expanded": String(this.actions.classList.contains("open")) }, "Actions");
    toggle.addEventListener("click", () => toggle.setAttribute("aria-expanded", String(this.actions.classList.toggle("open"))));
    this.head.append(toggle);
    this.renderActions();
    if (this.onChange) this.onChange(c);
  }

  button(label, testid, fn, attrs = {}) {
    const b = h("button", { type: "button", "data-testid": testid, ...attrs }, label);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await fn(); } catch (err) { toast(err.message, "error"); } finally { b.disabled = false; }
    });
    return b;
  }

  async act(path, body) {
    const result = await post(`/conversations/${this.id}/${path}`, body);
    await this.reloadHead();
    return result;
  }

  renderActions() {
    const c = this.conv;
    const me = this.app.me;
    const assign = h("select", { "aria-label": "Assign to", "data-testid": "action-assign" },
      h("option", { value: "" }, "Assign to…"),
      this.app.agents.filter((a) => !a.deactivated_at).map((a) => h("option", { value: `agent:${a.id}` }, `Agent: ${a.name}`)),
      this.app.teams.map((t) => h("option", { value: `team:${t.id}` }, `Team: ${t.name}`)),
      h("option", { value: "unassign" }, "Unassign"));
    assign.addEventListener("change", async () => {
      const [kind, id] = assign.value.split(":");
      try {
        if (kind === "agent") await this.act("assign", { agent_id: Number(id) });
        else if (kind === "team") await this.act("team", { team_id: Number(id) });
        else if (kind === "unassign") await this.act("unassign");
      } catch (err) { toast(err.message, "error"); }
      assign.value = "";
    });
    const labelInput = h("input", { type: "text", placeholder: "add label", "aria-label": "Add a label", maxlength: 50, size: 10 });
    labelInput.addEventListener("keydown", async (ev) => {
      if (ev.key !== "Enter" || !labelInput.value.trim()) return;
      ev.preventDefault();
      try { await this.act("labels", { add: [labelInput.value.trim()] }); } catch (err) { toast(err.message, "error"); }
    });
    const labels = c.labels.map((l) => this.button(`${l} ✕`, "label-remove", () => this.act("labels", { remove: [l] }),
      { class: "chip", "aria-label": `Remove label ${l}` }));
    const until = h("input", { type: "datetime-local", "aria-label": "Snooze until" });
    const tomorrow = new Date(Date.now() + 86400000);
    tomorrow.setMinutes(tomorrow.getMinutes() - tomorrow.getTimezoneOffset());
    until.value = tomorrow.toISOString().slice(0, 16);
    const csat = h("input", { type: "checkbox", "aria-label": "Ask the satisfaction survey", "data-testid": "resolve-csat" });
    const flows = (this.app.flows && this.app.flows.flows) || [];
    const current = flows.find((f) => f.name === c.flow_name) || flows.find((f) => f.name === this.app.flows.default) || flows[0];
    const state = h("select", { "aria-label": "Flow state to hand back to", "data-testid": "handback-state" },
      flows.map((f) => h("optgroup", { label: f.name }, f.states.filter((st) => !st.final).map((st) =>
        h("option", { value: `${f.name}:${st.name}`, selected: f === current && st.name === (c.flow_state || f.start),
          title: st.description || "" }, st.name)))));
    replace(this.actions,
      !c.assignee_id && me.agent_id ? this.button("Claim", "action-claim", () => this.act("claim"), { class: "primary" }) : null,
      assign,
      h("span", { class: "group" }, labels, labelInput),
      h("span", { class: "group" }, until, this.button("Snooze", "action-snooze", () => this.act("snooze", { until: new Date(until.value).toISOString() }))),
      c.status === "resolved"
        ? this.button("Reopen", "action-reopen", () => this.act("reopen"))
        : h("span", { class: "group" }, h("label", { class: "inline" }, csat, "survey"),
          this.button("Resolve", "action-resolve", () => this.act("resolve", { csat: csat.checked }), { class: "primary" })),
      h("span", { class: "group" }, flows.length ? state : null,
        this.button("Hand back to bot", "action-handback", () => {
          const [flow, ...rest] = state.value.split(":");
          return this.act("handback", { flow_name: flow, flow_state: rest.join(":") });
        }, { disabled: !flows.length, title: flows.length ? "The bot picks up at the chosen state" : "No bot flows run here" })));
  }

  // -- the composer -------------------------------------------------------------------------

  buildComposer() {
    this.input = h("textarea", { rows: 3, "data-testid": "composer-input", "aria-label": "Reply to the customer",
      placeholder: "Reply… (Enter to send, Shift+Enter for a new line, / for canned responses)" });
    this.channel = h("select", { "aria-label": "Channel", "data-testid": "channel-picker" });
    this.channelWhy = h("span", { class: "why" });
    this.noteToggle = h("button", { type: "button", "data-testid": "note-toggle", "aria-pressed": "false",
      title: "Private note: seen by agents only (n)" }, "Note");
    this.noteToggle.addEventListener("click", () => this.setNote(!this.noteMode));
    this.pending = [];      // uploaded files waiting for the next reply
    this.files = h("input", { type: "file", multiple: true, hidden: true, "aria-label": "Files to attach", "data-testid": "composer-file" });
    this.files.addEventListener("change", () => this.uploadFiles());
    this.chips = h("span", { class: "chips" });
    const attach = h("button", { type: "button", class: "ghost", "aria-label": "Attach files", title: "Attach files" }, icon("clip"));
    attach.addEventListener("click", () => this.files.click());
    this.send = h("button", { type: "submit", class: "primary", "data-testid": "composer-send" }, "Send");
    this.suggest = h("ul", { class: "canned", role: "listbox", "aria-label": "Canned responses", hidden: true });
    const form = h("form", { class: "composer", "aria-label": "Composer" }, this.suggest, this.input,
      h("div", { class: "composer-bar" }, this.noteToggle, this.channel, this.channelWhy, attach, this.files, this.chips,
        h("div", { class: "spacer" }), this.send));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.submit(); });
    this.input.addEventListener("keydown", (ev) => this.composerKey(ev));
    this.input.addEventListener("input", () => { this.pendingKey = null; this.cannedMenu(); this.sendTyping(); });
    return form;
  }

  async uploadFiles() {
    for (const file of [...this.files.files]) {
      try {
        const made = await api("POST", "/uploads", { raw: file, query: { filename: file.name },
          headers: { "Content-Type": file.type || "application/octet-stream" } });
        this.pending.push(made);
        this.pendingKey = null;
      } catch (err) { toast(`${file.name}: ${err.message}`, "error"); }
    }
    this.files.value = "";
    this.renderChips();
  }

  renderChips() {
    replace(this.chips, this.pending.map((f, i) => {
      const chip = h("button", { type: "button", class: "chip", "data-testid": "attachment-chip", "aria-label": `Remove ${f.filename}` },
        icon("clip"), f.filename, " ✕");
      chip.addEventListener("click", () => { this.pending.splice(i, 1); this.renderChips(); });
      return chip;
    }));
  }

  setNote(on) {
    this.noteMode = on;
    this.noteToggle.setAttribute("aria-pressed", String(on));
    this.composer.classList.toggle("note-mode", on);
    this.input.setAttribute("aria-label", on ? "Private note" : "Reply to the customer");
    this.input.placeholder = on ? "Private note (agents only)…" : "Reply… (Enter to send, Shift+Enter for a new line, / for canned responses)";
    this.send.textContent = on ? "Add note" : "Send";
  }

  async loadChannels() {
    try {
      const options = await api("GET", `/conversations/${this.id}/channels`);
      const avail = options.available.map((r) => h("option", { value: r.channel, selected: r.channel === options.default },
        `${r.channel}${r.needs_template ? " (template)" : ""}`));
      const unavailable = Object.entries(options.unavailable).map(([ch, why]) =>
        h("option", { value: ch, disabled: true }, `${ch}: ${String(why).replaceAll("_", " ")}`));
      replace(this.channel, h("option", { value: "" }, `auto${options.default ? ` (${options.default})` : ""}`), avail, unavailable);
      replace(this.channelWhy, options.available.length ? "" : "no channel can reach this customer now");
    } catch { replace(this.channel, h("option", { value: "" }, "auto")); }
  }

  composerKey(ev) {
    if (!this.suggest.hidden && ["ArrowDown", "ArrowUp", "Enter", "Tab", "Escape"].includes(ev.key)) {
      const items = [...this.suggest.children];
      let i = items.findIndex((li) => li.getAttribute("aria-selected") === "true");
      if (ev.key === "Escape") { this.suggest.hidden = true; ev.preventDefault(); return; }
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        i = (i + (ev.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
        items.forEach((li, j) => li.setAttribute("aria-selected", String(j === i)));
        ev.preventDefault();
        return;
      }
      if (items[Math.max(i, 0)]) { items[Math.max(i, 0)].click(); ev.preventDefault(); return; }
    }
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); this.submit(); }
  }

  async cannedMenu() {
    const text = this.input.value;
    if (!text.startsWith("/") || text.includes("\n")) { this.suggest.hidden = true; return; }
    if (!this.canned) { try { this.canned = await api("GET", "/canned-responses"); } catch { this.canned = []; } }
    const q = text.slice(1).toLowerCase();
    const found = this.canned.filter((c) => c.short_code.toLowerCase().includes(q) || (c.title || "").toLowerCase().includes(q)).slice(0, 8);
    replace(this.suggest, found.map((c, i) => {
      const li = h("li", { role: "option", "aria-selected": String(i === 0) }, h("strong", {}, `/${c.short_code}`), " ", c.body);
      li.addEventListener("mousedown", (ev) => ev.preventDefault());
      li.addEventListener("click", () => { this.input.value = c.body; this.suggest.hidden = true; this.input.focus(); });
      return li;
    }));
    this.suggest.hidden = !found.length;
  }

  sendTyping() {
    const now = Date.now();
    if (this.noteMode || now - (this.lastTyping || 0) < 3000) return;
    this.lastTyping = now;
    this.app.feed.send({ type: "typing", conversation_id: this.id, typing: true });
  }

  async submit() {
    const text = this.input.value;
    if (!text.trim() && !(this.pending.length && !this.noteMode)) return;
    if (this.sending) return;              // a double click: the first request is still on its way
    this.sending = true;
    this.send.disabled = true;
    // the key stays the same until the text changes, so a retry after an error is stored once
    this.pendingKey = this.pendingKey || newKey();
    try {
      let created;
      if (this.noteMode) {
        created = await post(`/conversations/${this.id}/notes`, { text });
      } else {
        const body = { text };
        if (this.channel.value) body.channel = this.channel.value;
        if (this.pending.length) body.attachments = this.pending.map(({ url, content_type, filename }) => ({ url, content_type, filename }));
        created = (await api("POST", `/conversations/${this.id}/messages`, { body, headers: { "Idempotency-Key": this.pendingKey } })).message;
      }
      this.add([created]);
      this.scrollDown();
      this.input.value = "";
      if (!this.noteMode) { this.pending = []; this.renderChips(); }
      this.pendingKey = null;
    } catch (err) {
      const reasons = err.body && err.body.error && err.body.error.reasons;
      toast(reasons ? `${err.message}: ${Object.entries(reasons).map(([c, r]) => `${c} ${r}`).join(", ")}` : err.message, "error");
    } finally {
      this.sending = false;
      this.send.disabled = false;
    }
  }

  focusComposer(note) {
    this.setNote(note);
    this.input.focus();
  }
}

export { attachmentsLabel };
