// Export as .byok file in the browser, under dual control: one admin fills the form on the Keys
// page with a KEK public key file and its kid, a second admin approves in another browser
// context, and the requester downloads the file from Approvals. The file is unwrapped here with
// Node's own crypto (RSA-OAEP SHA-1, then AES key wrap with padding), independent of byokd, to
// the key whose public key the console shows.
import { generateKeyPairSync, privateDecrypt, createDecipheriv, createPrivateKey, createPublicKey, constants } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { as, open, step, expect, env, OUT } from "./harness.mjs";

export async function byok(browser) {
  const kek = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pemFile = join(OUT, "kek.pub.pem");
  writeFileSync(pemFile, kek.publicKey.export({ type: "spki", format: "pem" }));
  const kid = `https://${env("BYOKD_VAULT")}.vault.azure.net/keys/kek-offline/0123456789abcdef0123456789abcdef`;
  const admin = await as(browser, "admin");
  const page = await open(admin, "#/keys/ledger");

  await step("Keys: Export as .byok file asks a second admin", async () => {
    await page.getByRole("heading", { name: "Key group ledger" }).waitFor();
    const exportForm = page.getByRole("form", { name: "Export as .byok file" });
    await exportForm.getByLabel("Key", { exact: true }).selectOption("l1");
    await exportForm.getByLabel("KEK public key (PEM)").setInputFiles(pemFile);
    await exportForm.getByLabel("KEK key id").fill(kid);
    await exportForm.getByRole("button", { name: "Export as .byok file" }).click();
    await page.locator("#notice", { hasText: "Export l1 as .byok: waits for a second admin" }).waitFor();
  }, page);

  const admin2 = await as(browser, "admin2");
  const second = await open(admin2, "#/admin");
  await step("Approvals: admin2 approves the export; only the requester may download", async () => {
    const row = second.locator("table.approvals tr", { hasText: "export key ledger/l1 as a .byok file" });
    await row.getByRole("button", { name: /^Approve/ }).click();
    await second.locator("#notice", { hasText: "Approved" }).waitFor();
    await second.locator("#approval-status").selectOption("approved");
    const done = second.locator("table.approvals tr", { hasText: "export key ledger/l1 as a .byok file" });
    await done.waitFor();
    expect((await done.getByRole("button", { name: /^Download the \.byok file/ }).count()) === 0, "admin2 is offered no download");
  }, second);

  await step("Approvals: the requester downloads the .byok file, which unwraps to the key", async () => {
    await page.getByRole("link", { name: "Administration" }).click();
    await page.locator("#daemon-status").waitFor();
    await page.locator("#approval-status").selectOption("approved");
    const row = page.locator("table.approvals tr", { hasText: "export key ledger/l1 as a .byok file" });
    const save = row.getByRole("button", { name: /^Download the \.byok file/ });
    await save.waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), save.click()]);
    expect(download.suggestedFilename() === "ledger-l1.byok", `file name ${download.suggestedFilename()}`);
    const doc = JSON.parse(readFileSync(await download.path(), "utf8"));
    expect(doc.schema_version === "1.0.0" && doc.header.kid === kid && doc.header.alg === "dir" && doc.header.enc === "CKM_RSA_AES_KEY_WRAP", `header ${JSON.stringify(doc.header)}`);
    const ct = Buffer.from(doc.ciphertext, "base64url");
    const aes = privateDecrypt({ key: kek.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, ct.subarray(0, 256));
    const kwp = createDecipheriv("id-aes256-wrap-pad", aes, Buffer.from("A65959A6", "hex"));
    const pkcs8 = Buffer.concat([kwp.update(ct.subarray(256)), kwp.final()]);
    const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ type: "spki", format: "der" });
    const shown = await page.evaluate(async () => (await (await fetch("/v1/groups/ledger/keys/l1/public", { headers: { Accept: "application/json" } })).json()).spki_der_base64);
    expect(spki.toString("base64") === shown, "the file unwraps to the HSM key's public key");
  }, page);
  expect(page.problems.length === 0 && second.problems.length === 0, `no errors in the pages: ${[...page.problems, ...second.problems].join("; ")}`);
  await admin2.close();
  await admin.close();
}
