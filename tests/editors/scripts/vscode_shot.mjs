// Saves a PNG of what the browser shows code-server as: node vscode_shot.mjs DEBUG_PORT FILE
// (test_vscode.py runs it when the driver asks for a screenshot; puppeteer-core from PUPPETEER_PREFIX).
import { createRequire } from "node:module";
import * as path from "node:path";

const require = createRequire(path.join(process.env.PUPPETEER_PREFIX, "node_modules", "_"));
const puppeteer = require("puppeteer-core");
const [port, file] = process.argv.slice(2);

const browser = await puppeteer.connect({ browserURL: `http://127.0.0.1:${port}`, defaultViewport: null });
try {
  const pages = await browser.pages();
  const page = pages.find((p) => p.url().includes("folder=")) ?? pages[0];
  await page.screenshot({ path: file });
} finally {
  browser.disconnect();
}
