// What every widget-driving script shares: Debian's headless chromium (playwright-core, no browser
// download) and the "result <json>" line the pytest side reads (gateway.devtools.testing.drive_browser).
import { chromium } from "playwright-core";

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

// Runs `body(browser, result)`, records an exception as result.error, closes the browser, prints.
export async function run(body) {
  const browser = await launch();
  const result = {};
  try {
    await body(browser, result);
  } catch (err) {
    result.error = String(err && err.stack || err);
  } finally {
    await browser.close();
  }
  console.log("result " + JSON.stringify(result));
  process.exit(0);
}
