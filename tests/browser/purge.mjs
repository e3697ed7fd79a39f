// Purge on a key group, dual control in the browser: the group's Azure key deleted behind
// byokd's back (through the emulator's admin interface), then Purge asked by one admin from the
// Keys page and approved by another in a second browser context, the job followed to success.
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { as, open, step, expect, env } from "./harness.mjs";
import { approved, azureLogShows } from "./seed.mjs";

/// Deletes `vault`'s key `name` in the emulator (soft delete, no "being deleted" window), as if
/// someone deleted it in the Azure portal.
function deleteBehindTheBack(vault, name) {
  const [host, port] = env("BYOKD_EMULATOR").split(/:(?=\d+$)/);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        method: "DELETE",
        path: `/_emulator/vaults/${encodeURIComponent(vault)}/keys/${encodeURIComponent(name)}`,
        servername: "admin.emulator.test",
        headers: { host: "admin.emulator.test" },
        ca: readFileSync(env("BYOKD_EMULATOR_CA")),
      },
      (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 204 ? resolve() : reject(new Error(`emulator delete of ${vault}/${name}: ${res.statusCode}`))));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

export async function purge(browser) {
  const admin = await as(browser, "admin");
  const page = await open(admin, "#/keys/ledger");

  await step("Keys: Purge asks a second admin once Azure holds the group's deleted key", async () => {
    await page.getByRole("heading", { name: "Key group ledger" }).waitFor();
    await page.locator('tr[data-key="l1"] code.version').waitFor();
    await deleteBehindTheBack(env("BYOKD_VAULT"), "ledger");
    await page.getByRole("button", { name: "Purge" }).click();
    await page.locator("#notice", { hasText: "Purge ledger: waits for a second admin" }).waitFor();
  }, page);

  const admin2 = await as(browser, "admin2");
  const second = await open(admin2, "#/admin");
  await step("Approvals: admin2 approves the purge and follows the job to success", async () => {
    await approved(second, "purge key group ledger");
  }, second);

  await step("System Logs: the Azure Service shows the purge", async () => {
    await azureLogShows(page, "ledger", "azure.key.purged");
  }, page);
  expect(page.problems.length === 0 && second.problems.length === 0, `no errors in the pages: ${[...page.problems, ...second.problems].join("; ")}`);
  await admin2.close();
  await admin.close();
}
