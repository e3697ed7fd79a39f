// A small harness for the console's browser tests: Debian's Chromium through playwright-core
// (never a downloaded browser; Playwright gives each launch a fresh, temporary profile), one
// context per identity with its client certificate, and named steps run in order with their
// timing and result printed.
import { chromium } from "playwright-core";
import { join } from "node:path";

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through tests/console_browser.rs)`);
  return v;
};

export const BASE = env("BYOKD_URL");
export const OUT = env("BYOKD_OUT");
const CERTS = env("BYOKD_CERTS");

export const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export async function launch() {
  return chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ARGS });
}

/// A context that presents `who`'s client certificate to the daemon's origin (Playwright's own
/// TLS client does, verifying the daemon against NODE_EXTRA_CA_CERTS).
export async function as(browser, who, options = {}) {
  const context = await browser.newContext({
    clientCertificates: [{ origin: BASE, certPath: join(CERTS, `${who}.pem`), keyPath: join(CERTS, `${who}.key`) }],
    acceptDownloads: true,
    viewport: { width: 1280, height: 800 },
    ...options,
  });
  context.setDefaultTimeout(15000);
  return context;
}

/// Opens the console as the context's identity and waits until it says who that is.
export async function open(context, hash = "") {
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    // Chromium reports each 4xx answer as an error too: not a problem where refusals are the test.
    if (m.type() === "error" && !(page.expectRefusals && /^Failed to load resource/.test(m.text()))) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("response", (r) => {
    if (r.status() >= 400 && !page.expectRefusals) problems.push(`${r.status()} ${r.url()}`);
  });
  page.problems = problems;
  await page.goto(`${BASE}/ui/${hash}`);
  await page.locator("#whoami .identity").waitFor();
  return page;
}

const results = [];
/// Runs one named step; a failure is recorded with a screenshot and ends the run.
export async function step(name, fn, page) {
  const began = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - began });
    console.log(`ok   ${name} (${Date.now() - began} ms)`);
  } catch (e) {
    results.push({ name, ok: false, ms: Date.now() - began, error: String(e && e.stack ? e.stack : e) });
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    if (page) await page.screenshot({ path: join(OUT, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
    throw e;
  }
}

/// A figure measured, never asserted.
export function benchmark(name, value, unit) {
  console.log(`bench ${name}: ${value} ${unit}`);
}

export function expect(cond, message) {
  if (!cond) throw new Error(`expected: ${message}`);
}

export function summary() {
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  return failed;
}
