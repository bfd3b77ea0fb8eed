// Drives the agent console in Debian's headless chromium (playwright-core, no browser download),
// as two agents in two browser contexts. Usage: node drive_console.mjs BASE_URL SHOTS_DIR ACCOUNTS_JSON
// playwright-core is resolved from PLAYWRIGHT_DIR (the widget test's tests/chat/browser).
// Talks to pytest over stdio: prints "step <name>" and waits for "go <json>" where the test acts
// (customer messages, the fake provider), and prints "result <json>" at the end.
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { createInterface } from "node:readline";

const require = createRequire(`${process.env.PLAYWRIGHT_DIR}/`);
const { chromium } = require("playwright-core");
const [base, shots, accountsJson] = process.argv.slice(2);
const accounts = JSON.parse(accountsJson);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async (name) => {
  console.log(`step ${name}`);
  const { value } = await lines.next();
  return JSON.parse(value.replace(/^go /, "") || "{}");
};
const T = { timeout: 15000 };
const result = { pageErrors: [], steps: [] };
const mark = (name) => result.steps.push(name);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

const pages = [];
// every control has an accessible name: a label, aria-label, its text, or a title
const unnamed = (page) => page.evaluate(() => [...document.querySelectorAll("button, input, select, textarea")]
  .filter((el) => el.offsetParent !== null || el.tagName === "SELECT")
  .filter((el) => !(el.getAttribute("aria-label") || (el.labels && el.labels.length) || (el.tagName === "BUTTON" && el.textContent.trim()) || el.title))
  .map((el) => el.outerHTML.slice(0, 120)));
result.unnamed = [];
async function open(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => result.pageErrors.push(`${name}: ${err}`));
  page.on("dialog", (d) => d.accept());
  page.on("console", (msg) => { if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) result.pageErrors.push(`${name} console: ${msg.text()}`); });
  pages.push(page);
  return page;
}

async function signIn(page, who) {
  await page.goto(`${base}/console`);
  await page.getByTestId("login-email").fill(who.email);
  await page.getByTestId("login-password").fill(who.password);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("sign-out").waitFor(T);
}

try {
  const a = await open("admin");
  const b = await open("agent");
  await signIn(a, accounts.admin);
  await signIn(b, accounts.agent);
  await b.locator("select[name=view]").selectOption("all");
  for (const page of [a, b]) {     // away: no auto-assignment, the agents pick work themselves
    await page.getByTestId("presence-toggle").click();
    await page.locator("[data-testid=presence-toggle][data-presence=away]").waitFor(T);
  }
  mark("signed-in");

  const info = await ask("signed-in");     // the customer writes on three channels now
  const item = (page) => page.locator(`[data-testid=conversation-item][data-conversation-id="${info.conversation_id}"]`);
  await item(a).waitFor(T);                // arrived live: no reload since sign-in
  mark("appeared-live");
  await a.locator(`[data-conversation-id="${info.conversation_id}"] .snippet`, { hasText: info.last_text }).waitFor(T);
  await a.screenshot({ path: `${shots}/console-queue.png` });

  await item(a).click();
  await a.locator("[data-testid=message].in").nth(info.messages - 1).waitFor(T);
  result.thread = await a.locator("[data-testid=message]").evaluateAll((els) => els.map((el) => ({
    id: Number(el.dataset.messageId), kind: el.className.replace("msg ", ""), channel: el.querySelector(".msg-meta svg").getAttribute("aria-label"),
    author: el.querySelector(".author").textContent, text: (el.querySelector(".body") || {}).textContent || "",
    attachments: [...el.querySelectorAll(".att-name")].map((n) => n.textContent) })));
  result.contactName = await a.getByTestId("contact-name").textContent();
  result.xss = await a.evaluate(() => ({ flag: window.__xss || 0,
    injectedImages: document.querySelectorAll('img[src="x"]').length,
    contactPanel: document.querySelector(".contact-title") && document.querySelector(".contact-title").textContent }));
  mark("history");

  await item(b).click();
  await b.getByTestId("assignee").filter({ hasText: "Unassigned" }).waitFor(T);
  await a.getByTestId("action-claim").click();
  await b.getByTestId("assignee").filter({ hasText: `Assigned to ${accounts.admin.name}` }).waitFor(T);
  await b.locator(`[data-testid=conversation-item][data-assignee-id="${accounts.admin.id}"]`).waitFor(T);   // the queue too
  result.assigneeOnB = await item(b).getAttribute("data-assignee-id");
  await item(a).waitFor({ state: "detached", timeout: 15000 });   // no longer in the claimer's "Unassigned" view
  await a.locator("select[name=view]").selectOption("all");
  await item(a).waitFor(T);
  mark("second-agent-saw-assignment");

  await a.getByTestId("composer-file").setInputFiles({ name: "receipt.png", mimeType: "image/png",
    buffer: Buffer.from(info.file_b64, "base64") });
  await a.getByTestId("attachment-chip").filter({ hasText: "receipt.png" }).waitFor(T);
  await a.getByTestId("composer-input").fill(info.reply);
  await a.getByTestId("composer-send").dblclick();        // a double click sends once
  await a.getByTestId("attachment-chip").first().waitFor({ state: "detached", timeout: 15000 });
  await a.locator("[data-testid=message].out", { hasText: info.reply }).waitFor(T);
  await ask("replied");                                    // the fake provider received it and reported delivery
  await a.locator("[data-testid=message].out", { hasText: info.reply }).locator("[data-testid=message-status]",
    { hasText: "delivered" }).waitFor(T);
  result.replyCount = await a.locator("[data-testid=message].out", { hasText: info.reply }).count();
  mark("replied");

  await a.getByTestId("note-toggle").click();
  await a.getByTestId("composer-input").fill(info.note);
  await a.getByTestId("composer-input").press("Enter");
  await a.locator("[data-testid=message].note", { hasText: info.note }).waitFor(T);
  mark("note");

  // keyboard first: shortcuts outside text boxes
  await a.getByTestId("composer-input").press("Escape");
  await a.keyboard.press("?");
  await a.locator("dialog#shortcuts[open]").waitFor(T);
  await a.keyboard.press("Escape");
  await a.keyboard.press("r");
  result.keys = { reply: await a.evaluate(() => document.activeElement.dataset.testid) };
  await a.keyboard.press("Escape");
  await a.keyboard.press("n");
  result.keys.note = await a.getByTestId("note-toggle").getAttribute("aria-pressed");
  await a.keyboard.press("Escape");
  await a.keyboard.press("r");
  await a.keyboard.press("Escape");
  await a.keyboard.press("k");
  await a.waitForFunction((cid) => location.hash !== `#/inbox/${cid}`, info.conversation_id);
  result.keys.previous = await a.evaluate(() => location.hash);
  await a.keyboard.press("j");
  await a.waitForFunction((cid) => location.hash === `#/inbox/${cid}`, info.conversation_id);
  await a.locator("[data-testid=message].note", { hasText: info.note }).waitFor(T);
  mark("keyboard");

  await a.getByLabel("Add a label").fill("vip");
  await a.getByLabel("Add a label").press("Enter");
  await a.locator("[data-testid=label-remove]", { hasText: "vip" }).waitFor(T);
  result.replyModeForCanned = await a.getByTestId("note-toggle").getAttribute("aria-pressed");   // "r" left note mode
  await a.getByTestId("composer-input").fill("/than");         // canned responses by short code
  await a.locator(".canned li", { hasText: "/thanks" }).waitFor(T);
  await a.getByTestId("composer-input").press("Enter");
  result.canned = await a.getByTestId("composer-input").inputValue();
  await a.getByTestId("composer-input").fill("");
  mark("label-and-canned");
  await a.screenshot({ path: `${shots}/console-conversation.png` });
  result.unnamed.push(...await unnamed(a));

  result.csrf = await a.evaluate(async (cid) => {
    const r = await fetch(`/api/v1/conversations/${cid}/notes`, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: "forged" }) });
    return { status: r.status, code: (await r.json()).error.code };
  }, info.conversation_id);
  mark("csrf");

  await a.getByTestId("action-resolve").click();
  await a.getByTestId("conversation-status").filter({ hasText: "resolved" }).waitFor(T);
  mark("resolved");

  // presence drives auto-assignment: the agent goes online and the waiting conversations come to them
  await b.locator("select[name=view]").selectOption("mine");
  await b.getByTestId("presence-toggle").click();
  await b.locator("[data-testid=presence-toggle][data-presence=online]").waitFor(T);
  await b.locator(`[data-testid=conversation-item][data-assignee-id="${accounts.agent.id}"]`).first().waitFor(T);
  result.autoAssigned = await b.locator("[data-testid=conversation-item]").count();
  mark("auto-assigned");

  await ask("history");
  await a.setViewportSize({ width: 1280, height: 1500 });     // the whole dashboard in one picture
  await a.goto(`${base}/console#/dashboard`);
  await a.locator("figure.chart").nth(3).waitFor(T);
  result.charts = await a.locator("figure.chart figcaption").allTextContents();
  result.csat = await a.locator("[data-testid=kpi-csat] strong").textContent();
  await a.screenshot({ path: `${shots}/console-dashboard.png` });
  await a.setViewportSize({ width: 1280, height: 800 });
  mark("dashboard");

  await a.goto(`${base}/console#/admin/agents`);
  await a.locator(`tr[data-agent-id="${accounts.agent.id}"]`).waitFor(T);
  result.unnamed.push(...await unnamed(a));
  await a.locator(`tr[data-agent-id="${accounts.agent.id}"] [data-testid=agent-deactivate]`).click();
  await a.locator(`tr[data-agent-id="${accounts.agent.id}"]`, { hasText: "deactivated" }).waitFor(T);
  // live: the server closes the agent's feed (rights re-check) and the page finds its session gone
  await b.getByTestId("login-email").waitFor(T);
  result.signedOutNotice = await b.locator(".signin [role=alert]").textContent();
  result.unnamed.push(...await unnamed(b));
  await b.getByTestId("login-email").fill(accounts.agent.email);
  await b.getByTestId("login-password").fill(accounts.agent.password);
  await b.getByTestId("login-submit").click();
  await b.locator(".signin [role=alert]", { hasText: "wrong" }).waitFor(T);
  mark("deactivated-signed-out");

  await a.setViewportSize({ width: 390, height: 844 });
  await a.goto(`${base}/console#/inbox/${info.conversation_id}`);
  await a.locator("[data-testid=message]").first().waitFor(T);
  await a.screenshot({ path: `${shots}/console-phone.png` });
  await a.setViewportSize({ width: 1280, height: 800 });
  await a.getByLabel("Switch light or dark theme").click();
  await a.locator("html[data-theme=dark]").waitFor({ state: "attached", timeout: 15000 });
  await a.screenshot({ path: `${shots}/console-dark.png` });
} catch (err) {
  result.error = String((err && err.stack) || err);
  for (const [i, page] of pages.entries()) {
    try {
      await page.screenshot({ path: `${tmpdir()}/console-failure-${i}.png` });
      result[`failureShot${i}`] = `${tmpdir()}/console-failure-${i}.png`;
      result[`failurePage${i}`] = (await page.locator("#app").innerText()).slice(0, 500);
    } catch { /* the page is gone */ }
  }
} finally {
  await browser.close();
}
console.log("result " + JSON.stringify(result));
process.exit(0);
