// The seed workflow through the console: a credential from an uploaded secret file, a key
// group and a key, Synchronize followed to success, the Azure version in the keys table, a
// forced rotation, Delete on Cloud Service asked by one admin and approved by another in a
// second browser context, the job in Jobs and System Logs, and the log exported and verified.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { as, open, step, expect, env, OUT } from "./harness.mjs";

const JOB_TIME = 90000;

/// Waits until the job followed in `box` is a new one (not `before`) that has ended: its id and
/// final state.
export async function jobEnds(page, box, before) {
  const fresh = before ? `:not([data-job="${before}"])` : "";
  const ended = page.locator(["succeeded", "failed", "cancelled"].map((s) => `${box} .job[data-state="${s}"]${fresh}`).join(", "));
  await ended.waitFor({ timeout: JOB_TIME });
  return { id: await ended.getAttribute("data-job"), state: await ended.getAttribute("data-state"), text: await ended.innerText() };
}

/// As [`jobEnds`], for a job that must succeed: its id.
async function jobSucceeds(page, box, before) {
  const job = await jobEnds(page, box, before);
  expect(job.state === "succeeded", `job ${job.id} succeeded: ${job.text}`);
  return job.id;
}

/// In a second admin's page on Administration: the pending approval whose row says `what` was
/// asked by admin and expires at a UTC time; `before` runs, then Approve, and the job it starts
/// is followed to success.
export async function approved(second, what, before = async () => {}) {
  const row = second.locator("table.approvals tr", { hasText: what });
  await row.waitFor();
  const cells = await row.locator("td").allInnerTexts();
  expect(cells[2] === "admin", `asked by admin: ${cells}`);
  expect(/ UTC$/.test(cells[4]), `expiry in UTC: ${cells}`);
  await before();
  await row.getByRole("button", { name: /^Approve/ }).click();
  await jobSucceeds(second, ".job-follow", "");
}

/// Opens System Logs filtered to the Azure Service and `group`, and waits for a record `event`.
export async function azureLogShows(page, group, event) {
  await page.getByRole("link", { name: "System Logs" }).click();
  await page.getByLabel("Service").selectOption("azure");
  await page.getByLabel("Key group").fill(group);
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator("table.log td", { hasText: event }).first().waitFor();
}

export async function seed(browser, shots) {
  const secret = readFileSync(env("BYOKD_SECRET_FILE"), "utf8").trim();
  const vault = env("BYOKD_VAULT");
  const admin = await as(browser, "admin");
  const page = await open(admin);

  await step("whoami: the admin's certificate names the identity and role", async () => {
    expect((await page.locator("#whoami .identity").innerText()) === "admin", "identity admin");
    expect((await page.locator("#whoami .role").innerText()) === "admin", "role admin");
  }, page);

  await step("Cloud Credentials: add a credential by uploading the secret file", async () => {
    await page.getByRole("link", { name: "Cloud Credentials" }).click();
    const form = page.getByRole("form", { name: "Add a credential" });
    await form.getByLabel("Name").fill("azure-app");
    await form.getByLabel("Tenant ID").fill(env("BYOKD_TENANT"));
    await form.getByLabel("Client (application) ID").fill(env("BYOKD_CLIENT"));
    await form.getByLabel("Client secret file").setInputFiles(env("BYOKD_SECRET_FILE"));
    await form.getByRole("button", { name: "Add credential" }).click();
    await page.locator("table.credentials td", { hasText: "azure-app" }).first().waitFor();
    // The secret is never rendered, and the page keeps no copy of the file.
    expect(!(await page.content()).includes(secret), "the secret is not in the page");
    expect((await form.getByLabel("Client secret file").evaluate((i) => i.files.length)) === 0, "the file choice is cleared");
    await shots(page, "credentials");
  }, page);

  await step("Keys: create a key group (RSA-2048, the emulator's vault)", async () => {
    await page.getByRole("link", { name: "Keys", exact: true }).click();
    const form = page.getByRole("form", { name: "Create a key group" });
    await form.getByLabel("Name", { exact: true }).fill("payments");
    await form.getByLabel("Credential").selectOption("azure-app");
    await form.getByLabel("Azure vault name").fill(vault);
    await form.getByLabel("Key type and length").selectOption("RSA-2048");
    await form.getByLabel("Exponent (RSA)").selectOption("65537");
    await form.getByRole("button", { name: "Create group" }).click();
    await page.waitForURL(/#\/keys\/payments$/);
    await page.getByRole("heading", { name: "Key group payments" }).waitFor();
  }, page);

  await step("Keys: Create → Random generates a key in the HSM", async () => {
    await page.getByLabel("New key name").fill("k1");
    await page.getByRole("button", { name: "Create → Random" }).click();
    await page.locator('tr[data-key="k1"]').waitFor();
    const cells = await page.locator('tr[data-key="k1"] td').allInnerTexts();
    expect(cells[1] === "payments" && cells[2] === "not on cloud" && cells[5] === "RSA-2048" && /^[0-9A-F]{4,6}$/.test(cells[6]), `row ${cells}`);
  }, page);

  let last = "";
  await step("Cloud → Synchronize: the job is followed live to success", async () => {
    await page.getByRole("button", { name: "Cloud → Synchronize" }).click();
    last = await jobSucceeds(page, "#job-follow", "");
  }, page);

  await step("Keys table: the key shows its Azure version", async () => {
    const version = page.locator('tr[data-key="k1"] code.version');
    await version.waitFor();
    expect(/^[0-9a-f]{32}$/.test(await version.innerText()), "a 32-hex Azure version");
    await shots(page, "keys");
  }, page);

  await step("Cloud → Force Rotation: a new key, pushed", async () => {
    await page.getByRole("button", { name: "Cloud → Force Rotation" }).click();
    last = await jobSucceeds(page, "#job-follow", last);
    await page.locator("tr[data-key] code.version").nth(1).waitFor();
    expect((await page.locator("tr[data-key]").count()) === 2, "two keys after the rotation");
  }, page);

  await step("Cloud → Delete on Cloud Service: admin asks, it waits for a second admin", async () => {
    await page.getByRole("button", { name: "Cloud → Delete on Cloud Service" }).click();
    await page.locator("#notice", { hasText: "waits for a second admin" }).waitFor();
  }, page);

  const admin2 = await as(browser, "admin2");
  const second = await open(admin2, "#/admin");
  await step("Approvals: admin2 approves in a second context and follows the job", async () => {
    await approved(second, "payments", () => shots(second, "approvals"));
  }, second);
  // The requester cannot approve their own request: the console offers only Withdraw.
  await admin2.close();

  await step("Jobs: the delete on cloud is listed as succeeded", async () => {
    await page.getByRole("link", { name: "Jobs" }).click();
    const row = page.locator("table.jobs tr", { hasText: "Delete" }).first();
    await row.waitFor();
    expect((await row.locator("[data-state]").getAttribute("data-state")) === "succeeded", "succeeded");
    await shots(page, "jobs");
    await row.getByRole("link").click();
    await page.locator(".job .steps li").first().waitFor();
  }, page);

  await step("System Logs: the Azure Service shows the deletion", async () => {
    await azureLogShows(page, "payments", "azure.key.deleted");
    await shots(page, "logs");
  }, page);

  await step("System Logs: Export File (JSON Lines and CSV) downloads the whole log", async () => {
    await page.getByLabel("Service").selectOption("");
    await page.getByLabel("Key group").fill("");
    await page.getByRole("button", { name: "Apply filters" }).click();
    for (const format of ["jsonl", "csv"]) {
      await page.getByLabel("Export format").selectOption(format);
      const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#export-file").click()]);
      const file = join(OUT, `byokd-log.${format}`);
      await download.saveAs(file);
      const text = readFileSync(file, "utf8");
      expect(text.includes("azure.key.deleted"), `${format} export has the deletion`);
      expect(!text.includes(secret), `${format} export has no secret`);
    }
  }, page);

  await step("System Logs: the chain verifies", async () => {
    await page.getByRole("button", { name: "Verify the log chain" }).click();
    await page.locator(".verdict.ok", { hasText: "Chain intact" }).waitFor();
  }, page);

  await step("Keys: a key group in a Managed HSM, checked with Azure, shows its target", async () => {
    const pool = env("BYOKD_POOL");
    await page.getByRole("link", { name: "Keys", exact: true }).click();
    const form = page.getByRole("form", { name: "Create a key group" });
    await form.getByLabel("Name", { exact: true }).fill("treasury");
    await form.getByLabel("Service").selectOption("managed_hsm");
    await form.getByLabel("Credential").selectOption("azure-app");
    await form.getByLabel("Managed HSM name").fill(pool);
    await form.getByLabel("Key type and length").selectOption("EC-P256");
    await form.getByRole("button", { name: "Create group" }).click();
    await page.waitForURL(/#\/keys\/treasury$/);
    await page.getByRole("heading", { name: "Key group treasury" }).waitFor();
    const facts = await page.locator("dl.facts").innerText();
    expect(facts.includes("Azure Key Vault Managed HSM") && facts.includes(pool), `facts: ${facts}`);
    const row = await page.locator("table.groups tr", { hasText: "treasury" }).first().innerText();
    expect(row.includes(`${pool} (Managed HSM)`), `groups table: ${row}`);
  }, page);

  expect(page.problems.length === 0, `no errors in the page: ${page.problems.join("; ")}`);
  return { admin, page };
}
