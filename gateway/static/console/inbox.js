// The inbox page: queue | conversation | contact panel, fed by the realtime stream.
import { h, replace, toast } from "./dom.js";
import { Conversation } from "./conversation.js";
import { renderContact } from "./contact.js";
import { Queue } from "./queue.js";

export class Inbox {
  constructor(app) {
    this.app = app;
    this.queue = new Queue(app, (id) => { location.hash = `#/inbox/${id}`; });
    this.current = null;
    this.center = h("div", { class: "center-pane" }, h("p", { class: "empty" }, "Pick a conversation, or press j."));
    this.contact = h("aside", { class: "contact", "aria-label": "Contact" });
    this.el = h("div", { class: "inbox" }, this.queue.el, this.center, this.contact);
    this.unsubscribe = null;
  }

  start() {
    this.queue.load().catch((err) => toast(err.message, "error"));
    this.unsubscribe = this.app.feed.on((event) => this.onEvent(event));
  }

  onEvent(event) {
    if (!this.el.isConnected) { this.unsubscribe(); return; }
    if (["message.created", "conversation.updated", "assignment", "refetch", "conversation.merged"].includes(event.type)) {
      this.queue.refresh();
    }
    if (this.current) this.current.onEvent(event).catch(() => {});
  }

  async open(id) {
    this.el.classList.toggle("has-conversation", Boolean(id));
    if (!id) {
      this.current = null;
      replace(this.center, h("p", { class: "empty" }, "Pick a conversation, or press j."));
      replace(this.contact);
      this.queue.select(null);
      return;
    }
    if (this.current && this.current.id === id) return;
    this.queue.select(id);
    const conv = new Conversation(this.app, id, (c) => renderContact(this.contact, this.app, c));
    this.current = conv;
    replace(this.center, conv.el);
    try {
      await conv.load();
    } catch (err) {
      replace(this.center, h("p", { class: "empty" }, err.status === 404 ? "No such conversation, or not yours to see." : err.message));
    }
  }

  shortcut(key) {
    if (key === "j" || key === "k") {
      const id = this.queue.neighbour(key === "j" ? 1 : -1);
      if (id) location.hash = `#/inbox/${id}`;
      return true;
    }
    if (!this.current) return false;
    const click = (testid) => { const b = this.current.el.querySelector(`[data-testid=${testid}]`); if (b) b.click(); return true; };
    if (key === "r") { this.current.focusComposer(false); return true; }
    if (key === "n") { this.current.focusComposer(true); return true; }
    if (key === "c") return click("action-claim");
    if (key === "e") return click("action-resolve");
    return false;
  }
}
