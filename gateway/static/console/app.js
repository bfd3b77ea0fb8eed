// The agent console: sign-in, the shell (navigation, presence, theme, sign-out), routing and
// keyboard shortcuts. Plain ES modules served by the gateway; no build step, nothing external.
import { api, ApiError, post, whenSignedOut } from "./api.js";
import { h, icon, replace, toast } from "./dom.js";
import { Feed } from "./feed.js";
import { Inbox } from "./inbox.js";
import { renderAdmin } from "./admin.js";
import { renderDashboard } from "./dashboard.js";

const root = document.getElementById("app");
const app = { me: null, feed: null, inbox: null, teams: [], agents: [], flows: { default: null, flows: [] }, presence: "online", heartbeat: null };

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem("console.theme"));

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

// -- sign-in and invites ------------------------------------------------------------------------

function signInView(notice) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true,
    "data-testid": "login-email" });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password",
    required: true, "data-testid": "login-password" });
  const error = h("p", { class: "error", role: "alert" }, notice || "");
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in");
  const form = h("form", { class: "card signin", "aria-label": "Sign in" },
    h("h1", {}, "Agent console"), field("Email", email), field("Password", password), error, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      await api("POST", "/session", { body: { email: email.value, password: password.value }, signedOutOk: true });
      await start();
    } catch (err) {
      replace(error, err.status === 429 ? err.message : err.status === 401 ? "The email or the password is wrong."
        : `Could not sign in: ${err.message}`);
      submit.disabled = false;
    }
  });
  replace(root, h("main", { class: "center" }, form));
  email.focus();
}

function inviteView(token) {
  const password = h("input", { type: "password", autocomplete: "new-password", minlength: 10, required: true,
    "data-testid": "invite-password" });
  const again = h("input", { type: "password", autocomplete: "new-password", minlength: 10, required: true });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card signin", "aria-label": "Set your password" },
    h("h1", {}, "Welcome"), h("p", {}, "Choose a password (at least 10 characters) to sign in to the console."),
    field("Password", password), field("Password again", again), error,
    h("button", { type: "submit", class: "primary", "data-testid": "invite-submit" }, "Set password and sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (password.value !== again.value) { replace(error, "The two passwords differ."); return; }
    try {
      await api("POST", "/invites/accept", { body: { token, password: password.value }, signedOutOk: true });
      history.replaceState(null, "", "/console#/inbox");
      await start();
    } catch (err) {
      replace(error, err.message);
    }
  });
  replace(root, h("main", { class: "center" }, form));
  password.focus();
}

// -- the shell ----------------------------------------------------------------------------------

function signedOut(notice) {
  if (app.feed) app.feed.stop();
  clearInterval(app.heartbeat);
  clearInterval(app.sessionCheck);
  app.me = null;
  app.feed = null;
  app.inbox = null;
  signInView(notice);
}

whenSignedOut(() => { if (app.me) signedOut("Your session has ended. Sign in again."); });

async function setPresence(presence) {
  app.presence = presence;
  localStorage.setItem("console.presence", presence);
  const button = document.querySelector("[data-testid=presence-toggle]");
  if (button) {
    button.setAttribute("aria-pressed", String(presence === "online"));
    button.dataset.presence = presence;
    replace(button, h("span", { class: `dot ${presence}`, "aria-hidden": "true" }), presence === "online" ? "Online" : "Away");
  }
  if (app.me && app.me.agent_id) {
    try { await post("/presence", { presence }); } catch (err) { if (err.status !== 401) toast(err.message, "error"); }
  }
}

function header() {
  const admin = app.me.role === "admin";
  const link = (href, label) => h("a", { href, class: "nav" }, label);
  const presence = h("button", { type: "button", class: "presence", "data-testid": "presence-toggle",
    "aria-label": "Presence (online receives new assignments)", title: "Presence: online agents receive assignments" });
  presence.addEventListener("click", () => setPresence(app.presence === "online" ? "away" : "online"));
  const notify = h("button", { type: "button", class: "ghost", "aria-pressed": String(localStorage.getItem("console.notify") === "1"),
    title: "Desktop notification and sound for a new assignment", "aria-label": "Notify me of new assignments" }, icon("bell"));
  notify.addEventListener("click", async () => {
    const on = localStorage.getItem("console.notify") !== "1";
    if (on && "Notification" in window && Notification.permission === "default") await Notification.requestPermission();
    localStorage.setItem("console.notify", on ? "1" : "0");
    notify.setAttribute("aria-pressed", String(on));
  });
  const theme = h("button", { type: "button", class: "ghost", "aria-label": "Switch light or dark theme", title: "Light / dark" }, icon("theme"));
  theme.addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme === "dark" ||
      (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
    const next = dark ? "light" : "dark";
    localStorage.setItem("console.theme", next);
    applyTheme(next);
  });
  const signOut = h("button", { type: "button", class: "ghost", "data-testid": "sign-out" }, "Sign out");
  signOut.addEventListener("click", async () => {
    try { if (app.me.agent_id) await post("/presence", { presence: "offline" }); } catch { /* signing out anyway */ }
    try { await api("DELETE", "/session", { signedOutOk: true }); } catch { /* the cookie goes either way */ }
    signedOut("You signed out.");
  });
  return h("header", { class: "top" },
    h("a", { href: "#/inbox", class: "brand" }, h("img", { src: "/console/static/icon.svg", alt: "", width: 22, height: 22 }), "Console"),
    h("nav", { "aria-label": "Sections" }, link("#/inbox", "Inbox"),
      admin ? [link("#/dashboard", "Dashboard"), link("#/admin/teams", "Teams"), link("#/admin/agents", "Agents"),
        link("#/admin/tokens", "Tokens")] : null),
    h("div", { class: "spacer" }),
    h("span", { class: "who", title: app.me.role }, app.me.name),
    app.me.agent_id ? presence : null, notify, theme, signOut);
}

function notifyAssignment(event) {
  if (localStorage.getItem("console.notify") !== "1") return;
  if (event.type !== "assignment" || event.assignee_id !== app.me.agent_id || event.actor_id === app.me.agent_id) return;
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.connect(ctx.destination);
    osc.frequency.value = 880;
    osc.start();
    osc.stop(ctx.currentTime + 0.15);
  } catch { /* no audio */ }
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification("New conversation assigned to you", { body: `Conversation #${event.conversation_id}` });
  }
}

async function loadDirectory() {
  try {
    const [teams, agents, flows] = await Promise.all([api("GET", "/teams"), api("GET", "/agents"), api("GET", "/flows")]);
    app.teams = teams;
    app.agents = agents;
    app.flows = flows;
  } catch (err) {
    if (err.status !== 401) toast(`Could not load teams and agents: ${err.message}`, "error");
  }
}

function route() {
  if (!app.me) return;
  const main = document.getElementById("main");
  const hash = location.hash || "#/inbox";
  document.querySelectorAll("header a.nav").forEach((a) =>
    a.setAttribute("aria-current", hash.startsWith(a.getAttribute("href")) ? "page" : "false"));
  const conv = hash.match(/^#\/inbox\/(\d+)$/);
  if (hash.startsWith("#/inbox")) {
    if (!app.inbox || !main.contains(app.inbox.el)) {
      app.inbox = new Inbox(app);
      replace(main, app.inbox.el);
      app.inbox.start();
    }
    app.inbox.open(conv ? Number(conv[1]) : null);
    return;
  }
  app.inbox = null;
  if (hash === "#/dashboard") renderDashboard(main, app);
  else if (hash.startsWith("#/admin/")) renderAdmin(main, app, hash.slice(8));
  else location.hash = "#/inbox";
}

function shortcuts(ev) {
  const tag = (ev.target.tagName || "").toLowerCase();
  if (["input", "textarea", "select"].includes(tag) || ev.target.isContentEditable || ev.ctrlKey || ev.metaKey || ev.altKey) {
    if (ev.key === "Escape" && tag !== "select") ev.target.blur();
    return;
  }
  if (ev.key === "?") { document.getElementById("shortcuts").showModal(); ev.preventDefault(); return; }
  if (app.inbox && app.inbox.shortcut(ev.key)) ev.preventDefault();
}

function shortcutHelp() {
  const rows = [["j / k", "next / previous conversation"], ["r", "reply"], ["n", "private note"],
    ["c", "claim"], ["e", "resolve"], ["Enter", "send (Shift+Enter: new line)"], ["/", "canned responses (in the composer)"],
    ["Esc", "leave the text box"], ["?", "this help"]];
  const dlg = h("dialog", { id: "shortcuts", "aria-label": "Keyboard shortcuts" },
    h("h2", {}, "Keyboard shortcuts"),
    h("table", {}, h("tbody", {}, rows.map(([k, d]) => h("tr", {}, h("th", {}, h("kbd", {}, k)), h("td", {}, d))))),
    h("form", { method: "dialog" }, h("button", { class: "primary" }, "Close")));
  return dlg;
}

async function start() {
  app.me = await api("GET", "/me", { signedOutOk: true });
  replace(root, header(), h("main", { id: "main" }), shortcutHelp(), h("div", { id: "toasts", role: "status" }));
  app.feed = new Feed();
  app.feed.on(notifyAssignment);
  app.feed.start();
  await loadDirectory();
  if (app.me.agent_id) {
    await setPresence(localStorage.getItem("console.presence") || "online");
    app.heartbeat = setInterval(() => app.feed && app.feed.send({ type: "heartbeat", presence: app.presence }), 30000);
  }
  // a session can end elsewhere (signed out in another tab, deactivated): notice within a minute
  // even when idle; the feed's socket is closed by the server sooner when it re-checks rights
  app.sessionCheck = setInterval(() => api("GET", "/me").catch(() => {}), 60000);
  if (!location.hash.startsWith("#/")) location.hash = "#/inbox";
  route();
}

document.addEventListener("visibilitychange", () => {
  if (app.me && document.visibilityState === "visible") api("GET", "/me").catch(() => {});
});

window.addEventListener("hashchange", route);
document.addEventListener("keydown", shortcuts);

async function boot() {
  const invite = location.hash.match(/^#invite=([\w-]+)$/);
  if (invite) { inviteView(invite[1]); return; }
  try {
    await start();
  } catch (err) {
    signInView(err instanceof ApiError && err.status !== 401 ? `The server answered: ${err.message}` : "");
  }
}

boot();
