// Drives the demo page's chat widget in Debian's headless chromium (playwright-core, no browser download).
// Usage: node drive_widget.mjs BASE_URL SHOTS_DIR
// Talks to the pytest side over stdio: prints "step <name>" lines, waits for "go" on stdin where the
// test has to do something (an agent reply), and prints "result <json>" at the end.
import { run } from "./harness.mjs";
import { createInterface } from "node:readline";

const [base, shots] = process.argv.slice(2);
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
const step = async (name, wait = false) => {
  console.log(`step ${name}`);
  if (wait) await lines.next();
};

await run(async (browser, result) => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 720 } });
  page.on("pageerror", (err) => { result.pageErrors = [...(result.pageErrors || []), String(err)]; });
  await page.goto(base + "/");
  // Playwright's CSS engine pierces the widget's open shadow root.
  await page.locator(".panel.open .status", { hasText: "online" }).waitFor({ timeout: 15000 });

  await page.locator("textarea.input").fill("hello browser");
  await page.keyboard.press("Enter");
  await page.locator(".msg.theirs", { hasText: "You said: hello browser" }).waitFor({ timeout: 15000 });
  await page.screenshot({ path: `${shots}/1-replied.png` });

  await page.reload();
  await page.locator(".msg.theirs", { hasText: "You said: hello browser" }).waitFor({ timeout: 15000 });
  result.afterReload = await page.locator(".msg").allInnerTexts();
  await page.screenshot({ path: `${shots}/2-reloaded.png` });

  await step("reloaded", true);   // the test now writes an agent reply with quick replies
  await page.locator(".quick button", { hasText: "Yes" }).waitFor({ timeout: 15000 });
  await page.screenshot({ path: `${shots}/3-quick-replies.png` });
  await page.locator(".quick button", { hasText: "Yes" }).click();
  await page.locator(".msg.theirs", { hasText: "You said: Yes" }).waitFor({ timeout: 15000 });
  result.final = await page.locator(".msg").allInnerTexts();
  result.quickLeft = await page.locator(".quick button").count();
  await page.screenshot({ path: `${shots}/4-final.png` });
});
