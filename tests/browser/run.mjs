// The way users meet the tutorial: JupyterLab on localhost, the notebook opened in a real
// (headless) browser, "Run All Cells" with the Rust kernel, and the SVG plots found rendered.
// A screenshot is kept as the test's artifact (tests/browser/artifacts/).
//
//   node tests/browser/run.mjs            (after scripts/setup.sh; needs Debian's chromium)
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const artifacts = path.join(root, "tests/browser/artifacts");
mkdirSync(artifacts, { recursive: true });
const port = 8899;
const token = "subspace-browser-test";
const minutes = (m) => m * 60 * 1000;

const lab = spawn(path.join(root, ".venv/bin/jupyter"), [
  "lab", "--no-browser", `--port=${port}`, "--ServerApp.ip=127.0.0.1", `--IdentityProvider.token=${token}`,
  `--notebook-dir=${path.join(root, "notebooks")}`, "--ServerApp.disable_check_xsrf=True",
], { env: { ...process.env, JUPYTER_PATH: path.join(root, ".venv/share/jupyter") }, stdio: ["ignore", "pipe", "pipe"] });
let labLog = "";
lab.stdout.on("data", (d) => (labLog += d));
lab.stderr.on("data", (d) => (labLog += d));

async function waitForServer() {
  for (let i = 0; i < 120; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/api/status?token=${token}`);
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error("JupyterLab did not start:\n" + labLog);
}

let failed = false;
const browser = await (async () => {
  await waitForServer();
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
})();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(`http://127.0.0.1:${port}/lab/tree/das_tutorial.ipynb?token=${token}`);
  await page.waitForSelector(".jp-Notebook", { timeout: minutes(2) });
  // The kernel chosen by the notebook's metadata: Rust (evcxr).
  await page.waitForFunction(() => document.body.innerText.includes("Rust"), null, { timeout: minutes(2) });
  // Clear the committed outputs first, so the plots found below are the ones this run made.
  await page.click("text=Edit");
  await page.click("text=Clear Outputs of All Cells");
  await page.click("text=Run");
  await page.click("text=Run All Cells");
  // Wait until every code cell has run: no "[*]" prompt left and the last cell printed its line.
  await page.waitForFunction(
    () => document.body.innerText.includes("same prediction: true"),
    null, { timeout: minutes(25), polling: 2000 });
  const errors = await page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").allInnerTexts();
  const panics = errors.filter((t) => /panicked|Error:/.test(t));
  const svgs = await page.locator(".jp-RenderedSVG svg, .jp-RenderedImage svg, .jp-OutputArea-output svg").count();
  await page.screenshot({ path: path.join(artifacts, "das_tutorial.png"), fullPage: false });
  // Scroll to the training plot and keep a second screenshot.
  await page.locator("text=DAS training loss").first().scrollIntoViewIfNeeded().catch(() => {});
  await page.screenshot({ path: path.join(artifacts, "das_tutorial_training.png") });
  console.log(`plots rendered: ${svgs}; error outputs: ${panics.length}`);
  if (svgs < 11) { console.error("expected at least 11 rendered plots"); failed = true; }
  if (panics.length > 0) { console.error(panics.join("\n")); failed = true; }
} catch (e) {
  console.error(e);
  failed = true;
} finally {
  await browser.close();
  lab.kill("SIGTERM");
}
console.log(failed ? "0 passed, 1 failed" : "1 passed, 0 failed");
process.exit(failed ? 1 : 0);
