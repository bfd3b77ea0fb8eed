// Admin pages: teams, agents (invite, deactivate), API tokens (created once-shown, revoked).
import { api, post } from "./api.js";
import { h, replace, toast, when } from "./dom.js";

function table(headers, rows) {
  return h("table", { class: "grid" }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows));
}

function field(label, input) { return h("label", { class: "field inline" }, h("span", {}, label), input); }

function once(title, secret, note) {
  const box = h("input", { type: "text", readonly: true, value: secret, class: "secret", "aria-label": title, "data-testid": "shown-once" });
  box.addEventListener("focus", () => box.select());
  return h("div", { class: "card once", role: "status" }, h("strong", {}, title), box, h("p", { class: "muted" }, note));
}

async function teams(main, app) {
  const list = await api("GET", "/teams");
  const name = h("input", { type: "text", required: true, maxlength: 200 });
  const form = h("form", { class: "row" }, field("New team", name), h("button", { class: "primary" }, "Create"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await post("/teams", { name: name.value }); app.teams = await api("GET", "/teams"); render(main, app, "teams"); } catch (err) { toast(err.message, "error"); }
  });
  const agentName = (id) => (app.agents.find((a) => a.id === id) || {}).name || `#${id}`;
  return [h("h1", {}, "Teams"), form,
    table(["Team", "Members", "Created"], list.map((t) => h("tr", {}, h("td", {}, t.name),
      h("td", {}, t.agent_ids.map(agentName).join(", ") || "—"), h("td", {}, when(t.created_at)))))];
}

async function agents(main, app) {
  const list = await api("GET", "/agents");
  app.agents = list;
  const email = h("input", { type: "email", required: true, maxlength: 320, "data-testid": "invite-email" });
  const name = h("input", { type: "text", maxlength: 200 });
  const role = h("select", {}, h("option", { value: "agent" }, "agent"), h("option", { value: "admin" }, "admin"));
  const teamsBox = h("select", { multiple: true, size: Math.min(4, Math.max(2, app.teams.length)) },
    app.teams.map((t) => h("option", { value: t.id }, t.name)));
  const result = h("div");
  const form = h("form", { class: "row wrap" }, field("Email", email), field("Name", name), field("Role", role),
    field("Teams", teamsBox), h("button", { class: "primary", "data-testid": "invite-submit" }, "Invite"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const made = await post("/agents", { email: email.value, ...(name.value ? { name: name.value } : {}), role: role.value,
        team_ids: [...teamsBox.selectedOptions].map((o) => Number(o.value)) });
      await render(main, app, "agents");
      main.querySelector(".once-slot").append(once("Invite link (send it to the agent; it works once)", made.invite_url,
        "The agent opens it to choose a password."));
    } catch (err) { toast(err.message, "error"); }
  });
  const rows = list.map((a) => {
    const active = !a.deactivated_at;
    const toggle = h("button", { type: "button", class: active ? "danger" : "", "data-testid": active ? "agent-deactivate" : "agent-reactivate" },
      active ? "Deactivate" : "Reactivate");
    toggle.addEventListener("click", async () => {
      if (active && !confirm(`Deactivate ${a.name}? They are signed out everywhere at once.`)) return;
      try { await api("PATCH", `/agents/${a.id}`, { body: { active: !active } }); render(main, app, "agents"); } catch (err) { toast(err.message, "error"); }
    });
    const invite = h("button", { type: "button" }, "New invite link");
    invite.addEventListener("click", async () => {
      try {
        const made = await post(`/agents/${a.id}/invite`);
        main.querySelector(".once-slot").append(once(`Invite link for ${a.name}`, made.invite_url, "Earlier links stop working."));
      } catch (err) { toast(err.message, "error"); }
    });
    const memberOf = h("select", { multiple: true, size: Math.min(3, Math.max(1, app.teams.length)),
      "aria-label": `Teams of ${a.name}`, disabled: !active || !app.teams.length },
    app.teams.map((t) => h("option", { value: t.id, selected: a.team_ids.includes(t.id) }, t.name)));
    memberOf.addEventListener("change", async () => {
      try {
        await api("PATCH", `/agents/${a.id}`, { body: { team_ids: [...memberOf.selectedOptions].map((o) => Number(o.value)) } });
        app.teams = await api("GET", "/teams");
        toast(`Teams of ${a.name} saved`);
      } catch (err) { toast(err.message, "error"); }
    });
    return h("tr", { "data-agent-id": a.id }, h("td", {}, a.name), h("td", {}, a.email || "—"), h("td", {}, a.role), h("td", {}, memberOf),
      h("td", {}, active ? a.presence : "deactivated"), h("td", {}, a.has_password ? "yes" : "invited"),
      h("td", { class: "row" }, active && a.email ? invite : null, toggle));
  });
  return [h("h1", {}, "Agents"), form, h("div", { class: "once-slot" }), result,
    table(["Name", "Email", "Role", "Teams", "Presence", "Password", ""], rows)];
}

async function tokens(main, app) {
  const list = await api("GET", "/tokens");
  const role = h("select", {}, ["integration", "readonly", "agent", "admin"].map((r) => h("option", { value: r }, r)));
  const agent = h("select", {}, h("option", { value: "" }, "—"), app.agents.map((a) => h("option", { value: a.id }, a.name)));
  const name = h("input", { type: "text", maxlength: 200 });
  const form = h("form", { class: "row wrap" }, field("Name", name), field("Role", role), field("Agent (agent role)", agent),
    h("button", { class: "primary" }, "Create token"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const made = await post("/tokens", { role: role.value, name: name.value || `${role.value} token`,
        ...(agent.value ? { agent_id: Number(agent.value) } : {}) });
      await render(main, app, "tokens");
      main.querySelector(".once-slot").append(once("New token (shown once: copy it now)", made.token, "Only its prefix is kept."));
    } catch (err) { toast(err.message, "error"); }
  });
  const rows = list.map((t) => {
    const revoke = h("button", { type: "button", class: "danger" }, "Revoke");
    revoke.addEventListener("click", async () => {
      if (!confirm(`Revoke "${t.name}"? Integrations using it stop working at once.`)) return;
      try { await api("DELETE", `/tokens/${t.id}`); render(main, app, "tokens"); } catch (err) { toast(err.message, "error"); }
    });
    return h("tr", {}, h("td", {}, t.name), h("td", {}, h("code", {}, `gw_${t.prefix}_…`)),
      h("td", {}, [t.role, ...(t.scopes || [])].join(", ")),
      h("td", {}, t.last_used_at ? when(t.last_used_at) : "never"),
      h("td", {}, t.revoked_at ? `revoked ${when(t.revoked_at)}` : revoke));
  });
  return [h("h1", {}, "API tokens"), form, h("div", { class: "once-slot" }), table(["Name", "Token", "Role", "Last used", ""], rows)];
}

const PAGES = { teams, agents, tokens };

export async function render(main, app, page) {
  const build = PAGES[page];
  if (!build) { location.hash = "#/inbox"; return; }
  try {
    replace(main, h("section", { class: "admin page" }, await build(main, app)));
  } catch (err) {
    replace(main, h("section", { class: "page" }, h("p", { class: "error" }, err.status === 403 ? "Admins only." : err.message)));
  }
}

export { render as renderAdmin };
