// The widget and a message the server refuses for good (issue 11): it is shown as failed and never
// resent, however often the page reconnects; what a visitor types is cleaned before it is sent.
// Usage: node drive_widget_refused.mjs BASE_URL
import { run } from "./harness.mjs";

const [base] = process.argv.slice(2);
await run(async (browser, result) => {
  result.sentBad = 0;
  const page = await browser.newPage();
  page.on("pageerror", (err) => { result.pageErrors = [...(result.pageErrors || []), String(err)]; });
  page.on("websocket", (ws) => ws.on("framesent", (f) => {
    if (String(f.payload).includes("bad-1")) result.sentBad += 1;
  }));
  await page.goto(base + "/");
  await page.locator(".panel.open .status", { hasText: "online" }).waitFor({ timeout: 15000 });
  // A message left pending by an older widget (or a crafted one) that the server cannot store.
  await page.evaluate((key) => {
    const state = JSON.parse(localStorage.getItem(key) || "{}");
    state.pending = [{ client_msg_id: "bad-1", text: "x\u0000y" }];
    localStorage.setItem(key, JSON.stringify(state));
  }, "gwchat:" + base);
  await page.reload();   // the widget sends what is pending once it is connected: refused for good
  await page.locator(".msg.failed").waitFor({ timeout: 15000 });
  result.failed = await page.locator(".msg.failed").allInnerTexts();
  for (let i = 0; i < 2; i++) {   // each reload reconnects: a message still pending would be resent
    await page.reload();
    await page.locator(".panel.open .status", { hasText: "online" }).waitFor({ timeout: 15000 });
    await page.waitForTimeout(700);
  }
  result.pending = await page.evaluate((key) => JSON.parse(localStorage.getItem(key)).pending, "gwchat:" + base);
  await page.evaluate(() => window.GatewayChat.send("a\u0000b"));
  await page.locator(".msg.theirs", { hasText: "You said: ab" }).waitFor({ timeout: 15000 });
  result.echoed = true;
});
