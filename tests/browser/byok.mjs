// Export as .byok file in the browser, under dual control: one admin fills the form on the Keys
// page with a KEK public key file and its kid, a second admin approves in another browser
// context, and the requester downloads the file from Approvals. The file is unwrapped here with
// Node's own crypto (RSA-OAEP SHA-1, then AES key wrap with padding), independent of byokd, to
// the key whose public key the console shows; then imported into the emulator's vault as `az
// keyvault key import --byok-file` does (the KEK is the emulator's: tests/console_browser.rs
// registered it there), and the version it made recorded with Record a .byok import, after a
// version Azure does not have and a malformed one were refused on screen.
import { privateDecrypt, createDecipheriv, createPrivateKey, createPublicKey, constants } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { as, open, step, expect, env, OUT, BASE } from "./harness.mjs";

/// One HTTPS request to the emulator as Azure's `host` (its TLS names the host; its CA is
/// trusted): the answer's status and JSON body.
function azure(host, method, path, headers, body) {
  const [addr, port] = env("BYOKD_EMULATOR").split(/:(?=\d+$)/);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: addr, port: Number(port), method, path, servername: host, headers: { host, "content-length": Buffer.byteLength(body), ...headers }, ca: readFileSync(env("BYOKD_EMULATOR_CA")) },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
          } catch (e) {
            reject(new Error(`${method} https://${host}${path}: ${res.statusCode}, not JSON: ${e}`));
          }
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/// What `az keyvault key import --vault-name VAULT --name NAME --byok-file FILE --kty EC
/// --curve P-256 --ops sign verify` sends: the app signs in for Key Vault, then PUTs the key
/// with the file's bytes (base64url) as `key_hsm`. Returns the kid of the version it made.
async function azKeyImport(vault, name, byokFile) {
  const login = "login.microsoftonline.com";
  const form = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: env("BYOKD_CLIENT"),
    client_secret: readFileSync(env("BYOKD_SECRET_FILE"), "utf8").trim(),
    scope: "https://vault.azure.net/.default",
  }).toString();
  const token = await azure(login, "POST", `/${env("BYOKD_TENANT")}/oauth2/v2.0/token`, { "content-type": "application/x-www-form-urlencoded" }, form);
  expect(token.status === 200 && token.json.access_token, `a token for the import: ${token.status}`);
  const key = { kty: "EC-HSM", crv: "P-256", key_ops: ["sign", "verify"], key_hsm: readFileSync(byokFile).toString("base64url") };
  const body = JSON.stringify({ key, Hsm: true, attributes: { enabled: true } });
  const host = `${vault}.vault.azure.net`;
  const put = await azure(host, "PUT", `/keys/${encodeURIComponent(name)}?api-version=7.5`, { "content-type": "application/json", authorization: `Bearer ${token.json.access_token}` }, body);
  expect(put.status === 200 && put.json.key && put.json.key.kid, `the emulator imported the .byok file: ${put.status} ${JSON.stringify(put.json)}`);
  return put.json.key.kid;
}

export async function byok(browser) {
  const vault = env("BYOKD_VAULT");
  // The KEK the emulator's vault holds (made by tests/console_browser.rs), as the officer
  // downloaded its public key; the private key unwraps the file here, independently.
  const kek = { privateKey: createPrivateKey(readFileSync(env("BYOKD_KEK_KEY"))) };
  const pemFile = join(OUT, "kek.pub.pem");
  writeFileSync(pemFile, createPublicKey(kek.privateKey).export({ type: "spki", format: "pem" }));
  const kid = env("BYOKD_KEK_KID");
  let byokFile = "";
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
    byokFile = join(OUT, "ledger-l1.byok");
    await download.saveAs(byokFile);
    const doc = JSON.parse(readFileSync(byokFile, "utf8"));
    expect(doc.schema_version === "1.0.0" && doc.header.kid === kid && doc.header.alg === "dir" && doc.header.enc === "CKM_RSA_AES_KEY_WRAP", `header ${JSON.stringify(doc.header)}`);
    const ct = Buffer.from(doc.ciphertext, "base64url");
    const aes = privateDecrypt({ key: kek.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, ct.subarray(0, 256));
    const kwp = createDecipheriv("id-aes256-wrap-pad", aes, Buffer.from("A65959A6", "hex"));
    const pkcs8 = Buffer.concat([kwp.update(ct.subarray(256)), kwp.final()]);
    const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ type: "spki", format: "der" });
    const shown = await page.evaluate(async () => (await (await fetch("/v1/groups/ledger/keys/l1/public", { headers: { Accept: "application/json" } })).json()).spki_der_base64);
    expect(spki.toString("base64") === shown, "the file unwraps to the HSM key's public key");
  }, page);

  let imported = "";
  await step("Azure: the officer imports the .byok file into the vault (az keyvault key import)", async () => {
    imported = await azKeyImport(vault, "ledger", byokFile);
    expect(new RegExp(`^https://${vault}\\.vault\\.azure\\.net(:443)?/keys/ledger/[0-9a-f]{32}$`).test(imported), `the import's kid ${imported}`);
  }, page);

  await step("Keys: Record a .byok import refuses a version Azure lacks and a malformed one, on screen", async () => {
    await page.goto(`${BASE}/ui/#/keys/ledger`);
    await page.getByRole("heading", { name: "Key group ledger" }).waitFor();
    const before = await page.locator('tr[data-key="l1"] code.version').innerText();
    const record = page.getByRole("form", { name: "Record a .byok import" });
    await record.getByLabel("Key", { exact: true }).selectOption("l1");
    const field = record.getByLabel("Imported key id or version");
    const submit = record.getByRole("button", { name: "Record import" });
    page.expectRefusals = true;
    const missing = "0123456789abcdef0123456789abcdef";
    await field.fill(`https://${vault}.vault.azure.net/keys/ledger/${missing}`);
    await submit.click();
    await record.getByRole("alert").filter({ hasText: `has no version ${missing}` }).waitFor();
    expect((await page.locator("#notice.error").innerText()).includes("(not_found)"), "the notice says not_found too");
    await field.fill("not-a-version");
    await submit.click();
    await record.getByRole("alert").filter({ hasText: "32 hex characters" }).waitFor();
    // Another Azure key's kid is refused before the daemon is asked.
    await field.fill(`https://${vault}.vault.azure.net/keys/kek-offline/${missing}`);
    await submit.click();
    await record.getByRole("alert").filter({ hasText: "is Azure key kek-offline" }).waitFor();
    page.expectRefusals = false;
    const cells = await page.locator('tr[data-key="l1"] td').allInnerTexts();
    expect(cells[2] === before, `nothing recorded: ${cells}`);
  }, page);

  await step("Keys: Record a .byok import records the import's kid; the keys table shows its version", async () => {
    const version = imported.split("/").pop();
    const record = page.getByRole("form", { name: "Record a .byok import" });
    const before = await page.locator('tr[data-key="l1"] code.version').innerText();
    await record.getByLabel("Key", { exact: true }).selectOption("l1");
    await record.getByLabel("Imported key id or version").fill(imported);
    await record.getByRole("button", { name: "Record import" }).click();
    await page.locator("#notice", { hasText: `Recorded Azure version ${version} for key l1 (it was ${before})` }).waitFor();
    await page.locator('tr[data-key="l1"] code.version', { hasText: version }).waitFor();
    expect((await page.getByRole("form", { name: "Record a .byok import" }).getByRole("alert").count()) === 0, "no refusal shown");
  }, page);
  expect(page.problems.length === 0 && second.problems.length === 0, `no errors in the pages: ${[...page.problems, ...second.problems].join("; ")}`);
  await admin2.close();
  await admin.close();
}
