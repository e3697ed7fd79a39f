// The console's security in the browser: no page without a client certificate, an auditor's
// console without mutating actions (and the daemon refusing them when sent anyway), and a page
// of another origin that can neither drive the API through the admin's certificate nor frame
// the console.
import { createServer } from "node:http";
import { as, open, step, expect, BASE } from "./harness.mjs";

/// Mutating controls: none may be drawn for an auditor.
const MUTATING = /^(Add credential|Set expiry|Delete|Create group|Create → Random|Synchronize|Cloud → .*|Check cloud state|Recover|Purge|Approve|Reject|Withdraw|Cancel job)$/;

export async function security(browser, shots) {
  await step("without a client certificate the console does not load", async () => {
    const bare = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await bare.newPage();
    let failed = "";
    try {
      await page.goto(`${BASE}/ui/`, { timeout: 10000 });
    } catch (e) {
      failed = String(e);
    }
    expect(/ERR_(BAD_SSL_CLIENT_AUTH_CERT|SSL_PROTOCOL_ERROR|CONNECTION_(RESET|CLOSED)|SOCKET_NOT_CONNECTED|EMPTY_RESPONSE)/.test(failed), `a TLS refusal, got ${failed || "a page"}`);
    expect((await page.locator("#whoami").count()) === 0, "no console");
    await bare.close();
  });

  const auditor = await as(browser, "auditor");
  const page = await open(auditor);
  for (const [view, ready] of [
    ["#/credentials", "h1"],
    ["#/keys/g1", "table.keys-table tbody tr"],
    ["#/jobs", "h1"],
    ["#/logs", "table.log"],
    ["#/admin", "#daemon-status"],
  ]) {
    await step(`auditor: ${view} shows no mutating action`, async () => {
      await page.goto(`${BASE}/ui/${view}`);
      await page.locator(ready).first().waitFor();
      await page.waitForLoadState("networkidle");
      const buttons = await page.getByRole("button").allInnerTexts();
      const bad = buttons.filter((b) => MUTATING.test(b.trim()));
      expect(bad.length === 0, `no mutating buttons, found ${bad}`);
      expect((await page.locator("form.form").count()) === 0, "no forms that change anything");
      if (view === "#/admin") {
        expect(await page.locator("#designated").isDisabled(), "the designated switch is read-only");
        await shots(page, "admin-auditor");
      }
    }, page);
  }

  await step("auditor: the daemon refuses what the console does not offer", async () => {
    page.expectRefusals = true;
    const statuses = await page.evaluate(async () => {
      const json = { "Content-Type": "application/json" };
      const calls = [
        ["POST", "/v1/groups", { name: "sneaky", credential: "c1", vault: "contoso-kv", key_type: "EC-P256" }],
        ["POST", "/v1/groups/g1/keys", { name: "sneaky" }],
        ["POST", "/v1/groups/g1/sync", {}],
        ["PUT", "/v1/config/designated", { designated: false }],
        ["DELETE", "/v1/credentials/c1", {}],
      ];
      const out = [];
      for (const [method, path, body] of calls) {
        const r = await fetch(path, { method, headers: json, body: JSON.stringify(body) });
        out.push(`${method} ${path} ${r.status} ${(await r.json()).error?.code}`);
      }
      return out;
    });
    for (const s of statuses) expect(s.endsWith(" 403 forbidden"), `refused: ${s}`);
    page.expectRefusals = false;
  }, page);
  await auditor.close();

  // A page elsewhere (another origin: plain HTTP on another port) opened in the admin's browser.
  const evil = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>elsewhere</title>
<iframe id="framed" src="${BASE}/ui/"></iframe>
<form id="f" method="POST" action="${BASE}/v1/groups" enctype="text/plain" target="sink"><input name='{"name":"evil-form","credential":"c1","vault":"contoso-kv","key_type":"EC-P256","x":"' value='"}'></form>
<iframe name="sink"></iframe>
<script>
window.results = (async () => {
  const out = {};
  const body = JSON.stringify({ name: "evil-fetch", credential: "c1", vault: "contoso-kv", key_type: "EC-P256" });
  try {
    const r = await fetch("${BASE}/v1/groups", { method: "POST", credentials: "include", headers: { "Content-Type": "application/json" }, body });
    out.json = "answered " + r.status;
  } catch (e) { out.json = "blocked"; }
  try {
    await fetch("${BASE}/v1/groups", { method: "POST", mode: "no-cors", credentials: "include", headers: { "Content-Type": "text/plain" }, body });
    out.simple = "sent";
  } catch (e) { out.simple = "blocked"; }
  try {
    const r = await fetch("${BASE}/v1/whoami", { credentials: "include" });
    out.read = "read " + (await r.text());
  } catch (e) { out.read = "blocked"; }
  document.getElementById("f").submit();
  return out;
})();
</script>`);
  });
  await new Promise((r) => evil.listen(0, "127.0.0.1", r));
  const elsewhere = `http://127.0.0.1:${evil.address().port}/`;
  const admin = await as(browser, "admin");
  await step("another origin cannot drive the API or frame the console", async () => {
    const page = await admin.newPage();
    await page.goto(elsewhere);
    const out = await page.evaluate(() => window.results);
    expect(out.json === "blocked", `a JSON call from elsewhere is blocked: ${out.json}`);
    expect(out.read === "blocked", `nothing is read from elsewhere: ${out.read}`);
    await page.waitForTimeout(500);
    // The framed console never ran: the daemon forbids framing.
    const framed = page.frames().find((f) => f.url().startsWith(`${BASE}/ui/`));
    const ran = framed ? await framed.locator("#whoami .identity").count().catch(() => 0) : 0;
    expect(ran === 0, "the console does not run in a frame");
    // Nothing was created: the daemon's own view, from the console.
    const console_ = await open(admin, "#/keys");
    const names = await console_.locator("table.groups tbody tr td:first-child").allInnerTexts();
    expect(!names.some((n) => n.startsWith("evil")), `no group from elsewhere: ${names}`);
  });
  await admin.close();
  evil.close();
}
