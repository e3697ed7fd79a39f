// The remaining menus, and the console's usability: certificate credentials with their
// certificate and CSR, expiry, dual-control delete and withdrawal; check cloud state with its
// findings and recover; log filters and paging; the designated device and the daemon's status;
// keyboard use, labels, UTC times, the front panel's 800x480 screen, and the keys table with
// 10,000 keys (its first render reported as a benchmark figure).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { as, open, step, expect, benchmark, env, OUT, BASE } from "./harness.mjs";
import { jobEnds } from "./seed.mjs";

async function saved(page, click, name) {
  const [download] = await Promise.all([page.waitForEvent("download"), click()]);
  const file = join(OUT, name);
  await download.saveAs(file);
  return readFileSync(file, "utf8");
}

/// Applies the log filters and waits until the page shows the new result (the old one is marked
/// first, so a result drawn before the click never counts).
async function applyFilters(page) {
  await page.locator(".log-results > *").first().evaluate((e) => e.setAttribute("data-stale", ""));
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator(".log-results > :first-child:not([data-stale])").waitFor();
}

export async function menus(browser, shots) {
  const admin = await as(browser, "admin");
  const page = await open(admin, "#/credentials");

  await step("Cloud Credentials: a certificate credential, its certificate and CSR", async () => {
    const form = page.getByRole("form", { name: "Add a credential" });
    await form.getByLabel("Name").fill("cert-app");
    await form.getByLabel("Tenant ID").fill(env("BYOKD_TENANT"));
    await form.getByLabel("Client (application) ID").fill(env("BYOKD_CLIENT"));
    await form.getByLabel("Kind").selectOption("certificate");
    await form.getByLabel("Certificate validity (days)").fill("30");
    await form.getByRole("button", { name: "Add credential" }).click();
    const row = page.locator("table.credentials tr", { hasText: "cert-app" });
    await row.waitFor();
    const cells = await row.locator("td").allInnerTexts();
    expect(cells[1] === "certificate" && /^[0-9A-Fa-f]{40}$/.test(cells[6]), `thumbprint shown: ${cells}`);
    const cert = await saved(page, () => row.getByRole("button", { name: "Download the certificate of cert-app" }).click(), "cert-app.crt.pem");
    expect(cert.startsWith("-----BEGIN CERTIFICATE-----"), "a PEM certificate");
    const csr = await saved(page, () => row.getByRole("button", { name: "Download a CSR for cert-app" }).click(), "cert-app.csr.pem");
    expect(csr.startsWith("-----BEGIN CERTIFICATE REQUEST-----"), "a PEM CSR");
  }, page);

  await step("Cloud Credentials: set the expiry (UTC, RFC 3339 on hover)", async () => {
    await page.getByRole("button", { name: "Set expiry of azure-app" }).click();
    await page.getByLabel("New expiry of azure-app (RFC 3339)").fill("2030-01-31T12:00:00Z");
    await page.getByRole("button", { name: "Set expiry", exact: true }).click();
    const t = page.locator("table.credentials tr", { hasText: "azure-app" }).locator("time").first();
    await page.locator("table.credentials tr", { hasText: "azure-app" }).locator("time", { hasText: "2030-01-31 12:00:00 UTC" }).waitFor();
    void t;
    const title = await page.locator("table.credentials tr", { hasText: "azure-app" }).locator("time", { hasText: "2030-01-31" }).getAttribute("title");
    expect(title === "2030-01-31T12:00:00Z", `RFC 3339 on hover: ${title}`);
  }, page);

  await step("Cloud Credentials: delete asks a second admin; the requester may withdraw", async () => {
    await page.getByRole("button", { name: "Delete cert-app" }).click();
    await page.locator("#notice", { hasText: "waits for a second admin" }).waitFor();
    await page.getByRole("link", { name: "Administration" }).click();
    const row = page.locator("table.approvals tr", { hasText: "cert-app" });
    await row.waitFor();
    expect((await row.getByRole("button", { name: /^Approve/ }).count()) === 0, "no self-approval offered");
    await row.getByRole("button", { name: "Withdraw" }).click();
    await page.locator("#notice", { hasText: "Withdrew" }).waitFor();
  }, page);

  await step("Administration: designated device with its source, and the daemon status", async () => {
    await page.locator("#daemon-status").waitFor();
    const status = await page.locator("#daemon-status").innerText();
    expect(/Wrap strategy\s+host/.test(status) && /HSM\s+ready/.test(status), `status: ${status}`);
    const box = page.getByLabel(/designated device/);
    expect(await box.isChecked(), "designated at start");
    await page.locator(".designated .hint", { hasText: "Value: on; source: the configuration file" }).waitFor();
    await box.uncheck();
    await page.locator("#notice", { hasText: "no longer the designated device" }).waitFor();
    await page.locator(".designated .hint", { hasText: "Value: off; source: set by an admin" }).waitFor();
    await page.getByLabel(/designated device/).check();
    await page.locator(".designated .hint", { hasText: "Value: on; source: the configuration file" }).waitFor();
    await shots(page, "administration");
  }, page);

  await step("Keys: a key's public key downloads as PEM", async () => {
    await page.goto(`${BASE}/ui/#/keys/payments`);
    await page.locator('tr[data-key="k1"]').waitFor();
    const pem = await saved(page, () => page.getByRole("button", { name: "Download the public key of k1" }).click(), "k1.pub.pem");
    expect(pem.startsWith("-----BEGIN PUBLIC KEY-----"), `a PEM public key: ${pem.slice(0, 40)}`);
  }, page);

  await step("Keys: an EC group, its key synchronized from the key's own row", async () => {
    const form = page.getByRole("form", { name: "Create a key group" });
    await form.getByLabel("Name", { exact: true }).fill("ledger");
    await form.getByLabel("Credential").selectOption("azure-app");
    await form.getByLabel("Azure vault name").fill(env("BYOKD_VAULT"));
    await form.getByLabel("Key type and length").selectOption("EC-P256");
    expect(await form.getByLabel("Exponent (RSA)").isDisabled(), "no exponent for EC");
    await form.getByRole("checkbox", { name: "sign" }).check();
    await form.getByRole("checkbox", { name: "verify" }).check();
    await form.getByRole("button", { name: "Create group" }).click();
    await page.getByRole("heading", { name: "Key group ledger" }).waitFor();
    await page.getByLabel("New key name").fill("l1");
    await page.getByRole("button", { name: "Create → Random" }).click();
    await page.locator('tr[data-key="l1"]').waitFor();
    await page.getByRole("button", { name: "Synchronize l1" }).click();
    const job = await jobEnds(page, "#job-follow", "");
    expect(job.state === "succeeded", `the key's sync succeeded: ${job.text}`);
    await page.locator('tr[data-key="l1"] code.version').waitFor();
    const cells = await page.locator('tr[data-key="l1"] td').allInnerTexts();
    expect(cells[5] === "EC-P256", `row ${cells}`);
  }, page);

  await step("Jobs: a job waiting for approval is cancelled from its page", async () => {
    await page.getByRole("button", { name: "Cloud → Delete on Cloud Service" }).click();
    await page.locator("#notice", { hasText: "waits for a second admin" }).waitFor();
    await page.getByRole("link", { name: "Jobs" }).click();
    const row = page.locator("table.jobs tr", { hasText: "ledger" }).filter({ has: page.locator('[data-state="waiting-approval"]') });
    await row.getByRole("link").click();
    await page.locator('.job[data-state="waiting-approval"]').waitFor();
    await page.getByRole("button", { name: "Cancel job" }).click();
    await page.locator('.job[data-state="cancelled"]').waitFor();
    expect((await page.getByRole("button", { name: "Cancel job" }).count()) === 0, "no cancel on an ended job");
  }, page);

  await step("Keys: Check cloud state reports its findings; Recover shows why it cannot", async () => {
    await page.goto(`${BASE}/ui/#/keys/payments`);
    await page.getByRole("heading", { name: "Key group payments" }).waitFor();
    await page.getByRole("button", { name: "Check cloud state" }).click();
    const check = await jobEnds(page, "#job-follow", "");
    expect(check.state === "succeeded", `the check succeeded: ${check.text}`);
    await page.locator(".drift", { hasText: "Cloud state checked" }).waitFor();
    expect(/no findings|finding\(s\)/.test(await page.locator(".drift").innerText()), "the findings are reported");
    // The group's Azure key was deleted and purged on the cloud service: nothing to recover,
    // and the console says so with the job's own error.
    await page.getByRole("button", { name: "Recover" }).click();
    const recover = await jobEnds(page, "#job-follow", check.id);
    expect(recover.state === "failed" && /nothing to recover/.test(recover.text), `recover: ${recover.text}`);
    expect(await page.getByRole("button", { name: "Purge" }).isVisible(), "Purge offered to an admin");
  }, page);

  await step("System Logs: level and text filters, paging", async () => {
    await page.getByRole("link", { name: "System Logs" }).click();
    await page.locator("table.log").waitFor();
    await page.getByLabel("Level").selectOption("warn");
    await applyFilters(page);
    const levels = await page.locator("table.log .level").allInnerTexts();
    expect(levels.length > 0 && levels.every((l) => l === "WARN" || l === "ERROR"), `levels ${levels}`);
    await page.getByLabel("Level").selectOption("");
    // The text filter also searches fields the table does not show: an event code is shown.
    await page.getByLabel("Text").fill("credential.added");
    await applyFilters(page);
    const rows = await page.locator("table.log tbody tr").allInnerTexts();
    expect(rows.length >= 1 && rows.every((r) => r.includes("credential.added")), `text filter: ${rows}`);
    await page.getByLabel("Text").fill("");
    await page.getByLabel("Records per page").selectOption("10");
    await applyFilters(page);
    const first = await page.locator("table.log tbody tr td:first-child").allInnerTexts();
    expect(first.length === 10, `a full first page: ${first.length}`);
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator(".pager .page", { hasText: "Page 2" }).waitFor();
    const second = await page.locator("table.log tbody tr td:first-child").allInnerTexts();
    expect(Number(second[0]) > Number(first[first.length - 1]), "page 2 follows page 1");
    await page.getByRole("button", { name: "Previous page" }).click();
    await page.locator(".pager .page", { hasText: "Page 1" }).waitFor();
  }, page);

  await step("UTC times everywhere, RFC 3339 on hover", async () => {
    for (const view of ["#/jobs", "#/credentials", "#/keys/payments"]) {
      await page.goto(`${BASE}/ui/${view}`);
      await page.locator("main time").first().waitFor();
      const times = await page.locator("main time").evaluateAll((ts) => ts.map((t) => [t.textContent, t.title]));
      for (const [text, title] of times) {
        expect(/ UTC$/.test(text) && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(title), `${view}: ${text} / ${title}`);
      }
    }
  }, page);

  await step("keyboard: the menu is reached with Tab and followed with Enter; every control is labelled", async () => {
    await page.goto(`${BASE}/ui/#/keys`);
    await page.locator("table.groups").waitFor();
    await page.locator("body").click({ position: { x: 1, y: 1 } });
    let reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = (await page.evaluate(() => document.activeElement && document.activeElement.textContent)) === "Jobs";
    }
    expect(reached, "Tab reaches the Jobs menu entry");
    await page.keyboard.press("Enter");
    await page.waitForURL(/#\/jobs$/);
    for (const view of ["#/credentials", "#/keys/payments", "#/logs", "#/admin"]) {
      await page.goto(`${BASE}/ui/${view}`);
      await page.locator("main h1").waitFor();
      await page.waitForLoadState("networkidle");
      const unlabelled = await page.locator("main input, main select, main textarea, main button").evaluateAll((els) =>
        els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !(e.tagName === "BUTTON" && e.textContent.trim())).map((e) => e.outerHTML.slice(0, 80)),
      );
      expect(unlabelled.length === 0, `${view}: unlabelled controls ${unlabelled}`);
    }
  }, page);

  await step("benchmark: the keys table of a group with 10,000 keys", async () => {
    const began = Date.now();
    await page.goto(`${BASE}/ui/#/keys/g1`);
    await page.locator("#group-detail[data-render-ms]").waitFor({ timeout: 60000 });
    benchmark("keys table first render, 10,000 keys (navigation to first page)", Date.now() - began, "ms");
    benchmark("keys table first render, 10,000 keys (fetch and draw in the page)", await page.locator("#group-detail").getAttribute("data-render-ms"), "ms");
    const where = await page.locator(".keys .pager .page").innerText();
    expect(where.includes(`(${Number(env("BYOKD_BULK_KEYS")) + 1} keys)`), `all keys paged: ${where}`);
    expect((await page.locator("table.keys-table tbody tr").count()) === 50, "one page of rows");
    const t0 = Date.now();
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator(".keys .pager .page", { hasText: "Page 2 of" }).waitFor();
    benchmark("keys table next page, 10,000 keys", Date.now() - t0, "ms");
  }, page);
  await admin.close();

  const panel = await as(browser, "admin", { viewport: { width: 800, height: 480 } });
  const small = await open(panel, "#/keys/payments");
  await step("front panel 800x480: no page wider than the screen", async () => {
    for (const view of ["#/keys/payments", "#/jobs", "#/logs", "#/admin", "#/credentials"]) {
      await small.goto(`${BASE}/ui/${view}`);
      await small.locator("main h1").waitFor();
      await small.waitForLoadState("networkidle");
      const width = await small.evaluate(() => document.documentElement.scrollWidth);
      expect(width <= 800, `${view} is ${width} px wide`);
    }
    await small.goto(`${BASE}/ui/#/keys/payments`);
    await small.locator("table.keys-table").waitFor();
    await shots(small, "front-panel-keys");
  }, small);
  expect(page.problems.length === 0 && small.problems.length === 0, `no errors in the pages: ${[...page.problems, ...small.problems].join("; ")}`);
  await panel.close();
}
