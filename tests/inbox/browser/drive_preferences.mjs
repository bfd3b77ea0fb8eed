// Drives the preference page in Debian's headless chromium with JavaScript OFF, on a phone-sized
// screen: read the choices, tick SMS offers, save, then "Unsubscribe from all marketing".
// Usage: node drive_preferences.mjs PAGE_URL SCREENSHOT_PATH ; prints "result <json>".
import { createRequire } from "node:module";

const require = createRequire(`${process.env.PLAYWRIGHT_DIR}/`);
const { chromium } = require("playwright-core");
const [url, shot] = process.argv.slice(2);
const T = { timeout: 15000 };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const result = { steps: [] };
try {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  const states = () => page.$$eval("input[type=checkbox]", (els) => Object.fromEntries(els.map((e) => [e.name, e.checked])));
  const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  await page.goto(url, T);
  result.title = await page.title();
  result.before = await states();
  result.fitsPhone = await fits();
  result.unlabelled = await page.$$eval("input[type=checkbox]", (els) => els.filter((e) => !e.labels.length).length);
  await page.getByLabel("Offers and news").first().check(T);
  await Promise.all([page.waitForURL(/saved=1/, T), page.getByRole("button", { name: "Save my choices" }).click(T)]);
  result.savedNote = await page.getByRole("status").textContent(T);
  result.afterSave = await states();
  await page.screenshot({ path: shot, fullPage: true });
  await Promise.all([page.waitForLoadState("load"),
    page.getByRole("button", { name: "Unsubscribe from all marketing" }).click(T)]);
  result.afterUnsubscribe = await states();
} catch (err) {
  result.error = String(err);
} finally {
  await browser.close();
}
console.log(`result ${JSON.stringify(result)}`);
