// The way users meet the tutorial: JupyterLab on localhost, the notebook opened in a real
// (headless) browser, "Run All Cells" with the Rust kernel, and the SVG plots found rendered.
// A screenshot is kept as the test's artifact (tests/browser/artifacts/).
//
//   node tests/browser/run.mjs            (after scripts/setup.sh; needs Debian's chromium)
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const artifacts = path.join(root, "tests/browser/artifacts");
mkdirSync(artifacts, { recursive: true });
const port = 8899;
const token = "subspace-browser-test";
const minutes = (m) => m * 60 * 1000;

// Fresh user settings: render every cell (JupyterLab 4 otherwise only renders the cells in view,
// so plots below the fold are not in the page), no autosave (the committed notebook must stay as
// it is), no news prompt.
const settings = mkdtempSync(path.join(os.tmpdir(), "subspace-lab-settings-"));
const put = (plugin, value) => {
  const [pkg, name] = plugin.split(":");
  mkdirSync(path.join(settings, pkg), { recursive: true });
  writeFileSync(path.join(settings, pkg, `${name}.jupyterlab-settings`), JSON.stringify(value));
};
put("@jupyterlab/notebook-extension:tracker", { windowingMode: "none" });
put("@jupyterlab/docmanager-extension:plugin", { autosave: false });
put("@jupyterlab/apputils-extension:notification", { fetchNews: "false", checkForUpdates: false });
const workspaces = mkdtempSync(path.join(os.tmpdir(), "subspace-lab-workspaces-"));

const lab = spawn(path.join(root, ".venv/bin/jupyter"), [
  "lab", "--no-browser", `--port=${port}`, "--ServerApp.ip=127.0.0.1", `--IdentityProvider.token=${token}`,
  `--notebook-dir=${path.join(root, "notebooks")}`, "--ServerApp.disable_check_xsrf=True", "--allow-root",
], { env: { ...process.env, JUPYTER_PATH: path.join(root, ".venv/share/jupyter"),
         JUPYTERLAB_SETTINGS_DIR: settings, JUPYTERLAB_WORKSPACES_DIR: workspaces }, stdio: ["ignore", "pipe", "pipe"] });
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
let browser = null;
try {
  await waitForServer();
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
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
  // Wait until every code cell has run: the save cell printed its line and the last cell (the
  // held-out city, Rome) showed its patch.
  await page.waitForFunction(
    () => document.body.innerText.includes("same prediction: true")
      && document.body.innerText.includes('city of Rome is in the country of" ←'),
    null, { timeout: minutes(25), polling: 2000 });
  const errors = await page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").allInnerTexts();
  const panics = errors.filter((t) => /panicked|Error:/.test(t));
  // JupyterLab renders image/svg+xml outputs as an <img> inside .jp-RenderedSVG.
  const svgs = await page.locator(".jp-RenderedSVG").count();
  // Screenshots of the first patch plot and of the layer sweep, as a reader sees them.
  const plots = page.locator(".jp-RenderedSVG");
  await plots.nth(0).scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(artifacts, "das_tutorial.png") });
  await plots.nth(3).scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(artifacts, "das_tutorial_sweep.png") });
  console.log(`plots rendered: ${svgs}; error outputs: ${panics.length}`);
  if (svgs < 16) { console.error("expected at least 16 rendered plots"); failed = true; }
  if (panics.length > 0) { console.error(panics.join("\n")); failed = true; }
} catch (e) {
  console.error(e);
  failed = true;
} finally {
  if (browser) await browser.close();
  lab.kill("SIGTERM");
}
console.log(failed ? "0 passed, 1 failed" : "1 passed, 0 failed");
process.exit(failed ? 1 : 0);
