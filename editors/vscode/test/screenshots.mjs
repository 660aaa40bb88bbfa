// Drives code-server in Chromium through the palette as a user would and saves PNG screenshots.
// Run by screenshots.py (which starts the simulator and code-server): node screenshots.mjs URL OUTDIR
import { createRequire } from "node:module";
import * as path from "node:path";

const require = createRequire(path.join(process.env.PUPPETEER_PREFIX, "node_modules", "_"));
const puppeteer = require("puppeteer-core");
const [url, out] = process.argv.slice(2);

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"],
  defaultViewport: { width: 1400, height: 900 },
});
const page = await browser.newPage();
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until an element matching `selector` contains `text`. */
async function waitForText(selector, text, timeout = 60_000) {
  await page.waitForFunction(
    (sel, t) => [...document.querySelectorAll(sel)].some((e) => (e.textContent ?? "").replace(/\u00a0/g, " ").includes(t)),
    { timeout, polling: 200 },
    selector,
    text,
  );
}

/** Waits until some frame (a webview: the Markdown preview) shows `text`. */
async function waitForFrameText(text, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    for (const frame of page.frames()) {
      try {
        if (await frame.evaluate((t) => (document.body?.innerText ?? "").includes(t), text)) {
          return;
        }
      } catch {
        // a frame that went away
      }
    }
    if (Date.now() > deadline) {
      throw new Error(`no frame shows ${JSON.stringify(text)}`);
    }
    await pause(200);
  }
}

async function shot(name, what) {
  const file = path.join(out, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`${file}: ${what}`);
}

/** F1, the command's name, Enter. */
async function palette(command) {
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true });
  await page.keyboard.type(command);
  await waitForText(".quick-input-list .monaco-list-row", command, 10_000);
  await page.keyboard.press("Enter");
}

/** Waits for the input box that asks `prompt`, types `text` over what is prefilled, Enter. */
async function answer(prompt, text) {
  await waitForText(".quick-input-widget", prompt, 30_000);
  const input = await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true });
  await input.focus();
  await input.evaluate((e) => e.select()); // over what is prefilled
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
}

async function dismissNotifications() {
  await palette("Notifications: Clear All Notifications");
  await pause(300);
}

try {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".monaco-workbench", { timeout: 60_000 });
  // The extension's status bar item, once the server answered `phasewise.status`.
  await waitForText(".statusbar", "plan: sim-planner/claude-sim");

  // Open app.py (quick open: F1, drop the ">", the file's name).
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true });
  await page.keyboard.press("Backspace");
  await page.keyboard.type("app.py");
  await waitForText(".quick-input-list .monaco-list-row", "app.py", 10_000);
  await page.keyboard.press("Enter");
  await waitForText(".monaco-editor .view-lines", "def load(path");
  await pause(500);

  // 1. A missing key: preflight says so before asking for the instruction, with its fixes.
  await palette("Phasewise: Review");
  await waitForText(".notifications-toasts", "cannot run");
  await pause(400);
  await shot("missing-key", "Review from the palette with REVIEWER_API_KEY missing: the warning and its actions");

  // ... and the status bar's actions.
  await dismissNotifications();
  await page.evaluate(() => {
    const item = [...document.querySelectorAll(".statusbar-item")].find((e) => e.textContent.includes("plan: sim-planner"));
    (item.querySelector("a") ?? item).click();
  });
  await waitForText(".quick-input-list", "Set API Key…", 10_000);
  await pause(300);
  await shot("status-actions", "the status bar item clicked: each phase's route and key, and the actions");
  await page.keyboard.press("Escape");

  // 2. A rate limit with retry-after: the notification counts down, the plan view says it waits.
  await palette("Phasewise: Plan");
  await answer("What should the plan achieve?", "Split load into read and parse, with errors reported");
  await waitForText(".notifications-toasts", "until retry");
  await waitForFrameText("waiting for a rate limit to lift");
  await pause(1500);
  await shot("rate-limit-countdown", "Plan on a rate-limited model: the countdown notification with Cancel, the plan view waiting");

  // Wait for the plan to finish (the countdown, then the streamed answer).
  await page.waitForFunction(
    () => ![...document.querySelectorAll(".notifications-toasts")].some((e) => e.textContent.includes("Phasewise plan")),
    { timeout: (Number(process.env.RATE_LIMIT_SECONDS) + 60) * 1000, polling: 500 },
  );
  await pause(1000);
  await shot("plan-done", "the plan, rendered beside the file");

  // 3. A code edit across two files: shown as a diff, awaiting the user's Apply or Discard.
  await palette("Phasewise: Code");
  await answer("What should change?", "Rename load to read_file and keep its callers working");
  await waitForText(".notifications-toasts", "Review the change to app.py, orders.py");
  await waitForText(".monaco-editor .view-lines", "from app import read_file");
  await pause(1200);
  await shot(
    "code-review",
    "Code (working in steps) renames across app.py and orders.py: its steps listed beside the multi-file diff, Apply Pending Change and Discard Pending Change in its title bar",
  );

  // ... the title bar's ✓: both files change at once, the diff closes, back to app.py.
  await page.evaluate(() => {
    const apply = [...document.querySelectorAll(".editor-actions .action-label")].find((e) =>
      (e.getAttribute("aria-label") ?? "").includes("Apply Pending Change"),
    );
    if (!apply) {
      throw new Error("no Apply Pending Change button in the editor title");
    }
    apply.click();
  });
  await page.waitForFunction(
    () => {
      const text = [...document.querySelectorAll(".monaco-editor .view-lines")].map((e) => e.textContent).join("");
      return text.replace(/\u00a0/g, " ").includes("def read_file(path");
    },
    { timeout: 60_000, polling: 200 },
  );
  await waitForFrameText("applied, 2 files"); // the code phase's view says how it ended, under its steps
  await pause(800);
  await shot("code-edit", "the ✓ clicked: the change landed in both files, the diff closed, app.py is back");

  // 4. Cancel, with the notification's own button, during a second rate-limit wait.
  const queued = await fetch(process.env.SIM_FAULTS_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      provider: "sim-planner",
      fault: { preset: "anthropic.rate_limit_error", retry_after: Number(process.env.RATE_LIMIT_SECONDS) },
    }),
  });
  if (!queued.ok) {
    throw new Error(`queuing the rate limit: ${queued.status} ${await queued.text()}`);
  }
  await palette("Phasewise: Plan");
  await answer("What should the plan achieve?", "Add type hints to Store.get");
  await waitForText(".notifications-toasts", "until retry");
  await page.evaluate(() => {
    const toast = [...document.querySelectorAll(".notifications-toasts .notification-toast")].find((e) =>
      e.textContent.includes("until retry"),
    );
    [...toast.querySelectorAll(".monaco-button")].find((b) => b.textContent.trim() === "Cancel").click();
  });
  await waitForText(".notifications-toasts", "cancelled");
  await waitForFrameText("cancelled");
  await pause(500);
  await shot("cancelled", "the countdown's Cancel button clicked: the notification and the plan view say it was cancelled");
} catch (err) {
  await shot("failed", `the page when the script failed: ${err}`);
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
