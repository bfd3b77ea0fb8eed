// The contact panel: identities on every channel, attributes, the thread's episodes, recent
// events (what journeys react to); admins export or erase the contact here, after confirming.
import { api, post } from "./api.js";
import { h, replace, toast, when } from "./dom.js";

export async function renderContact(panel, app, conv) {
  const contact = conv.contact;
  if (!contact) { replace(panel); return; }
  const attrs = Object.entries(contact.attributes || {});
  const sections = [
    h("h3", {}, "Contact"),
    h("p", { class: "contact-title" }, contact.name || "Unknown contact"),
    h("h4", {}, "Identities"),
    h("ul", { class: "plain" }, (contact.identities || []).map((i) =>
      h("li", {}, h("span", { class: "badge" }, i.kind), " ", i.address, i.verified ? " ✓" : ""))),
    h("h4", {}, "Attributes"),
    attrs.length ? h("dl", { class: "attrs" }, attrs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]))
      : h("p", { class: "muted" }, "none"),
    h("h4", {}, "Conversation"),
    h("p", { class: "muted" }, `One thread across channels; ${conv.episodes} episode${conv.episodes === 1 ? "" : "s"}`,
      conv.episode && conv.episode.escalation_reason ? `; escalated: ${conv.episode.escalation_reason}` : ""),
  ];
  const consents = h("ul", { class: "plain consents" }, h("li", { class: "muted" }, "loading…"));
  sections.push(h("h4", {}, "Consent"), consents);
  const journeys = h("ul", { class: "plain journeys" }, h("li", { class: "muted" }, "loading…"));
  sections.push(h("h4", {}, "Journeys"), journeys);
  const events = h("ul", { class: "plain events" }, h("li", { class: "muted" }, "loading…"));
  sections.push(h("h4", {}, "Recent events (journeys react to these)"), events);
  if (app.me.role === "admin") {
    const exp = h("button", { type: "button" }, "Export");
    exp.addEventListener("click", async () => {
      try {
        const data = await api("GET", `/contacts/${contact.id}/export`);
        const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
        const a = h("a", { href: URL.createObjectURL(blob), download: `contact-${contact.id}.json` });
        document.body.append(a);
        a.click();
        a.remove();
      } catch (err) { toast(err.message, "error"); }
    });
    const erase = h("button", { type: "button", class: "danger" }, "Erase…");
    erase.addEventListener("click", async () => {
      if (!confirm(`Erase ${contact.name || "this contact"}? Identities are removed and messages redacted. This cannot be undone.`)) return;
      try { await post(`/contacts/${contact.id}/erase`); toast("Contact erased"); location.hash = "#/inbox"; } catch (err) { toast(err.message, "error"); }
    });
    sections.push(h("h4", {}, "Data rights"), h("div", { class: "row" }, exp, erase));
  }
  replace(panel, sections);
  try {
    const found = await api("GET", `/contacts/${contact.id}/consent`);
    replace(consents, found.consents.length ? found.consents.map((c) => h("li", { "data-testid": "consent" },
      h("span", { class: `badge ${c.granted ? "status-open" : "st-failed"}` }, c.granted ? "yes" : "no"), " ",
      `${c.channel} · ${c.purpose}`, h("span", { class: "muted" }, ` (${c.source || "unknown source"}, ${when(c.updated_at)})`)))
      : h("li", { class: "muted" }, "nothing recorded (transactional messages only)"));
  } catch { replace(consents, h("li", { class: "muted" }, "not available")); }
  try {
    const found = await api("GET", `/contacts/${contact.id}/journeys`);
    replace(journeys, found.journeys.length ? found.journeys.map((j) => h("li", { "data-testid": "journey" },
      h("strong", {}, j.journey), " ", h("span", { class: "badge" }, j.status),
      h("span", { class: "muted" }, j.status === "active" ? ` at ${j.waiting_event ? `waiting for ${j.waiting_event}` : j.step || "start"}`
        : ` ${j.exit_reason || ""} ${when(j.exited_at || j.converted_at)}`)))
      : h("li", { class: "muted" }, "none"));
  } catch { replace(journeys, h("li", { class: "muted" }, "not available")); }
  try {
    const found = await api("GET", "/events", { query: { contact_id: contact.id, limit: 10 } });
    replace(events, found.events.length ? found.events.map((e) => h("li", {}, h("strong", {}, e.name), " ", h("span", { class: "muted" }, when(e.occurred_at))))
      : h("li", { class: "muted" }, "none"));
  } catch { replace(events, h("li", { class: "muted" }, "not available")); }
}
