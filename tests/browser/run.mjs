// The console's browser tests, run by tests/console_browser.rs with the rig's daemon, emulator
// and certificates in the environment. Exits non-zero when a step fails.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, summary, env } from "./harness.mjs";
import { seed } from "./seed.mjs";
import { menus } from "./menus.mjs";
import { security } from "./security.mjs";
import { purge } from "./purge.mjs";
import { byok } from "./byok.mjs";

const SHOTS = env("BYOKD_SCREENSHOTS");
mkdirSync(SHOTS, { recursive: true });

/// Saves a screenshot of a main screen for docs/screenshots (the README shows them).
async function shots(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

const browser = await launch();
let failed = 1;
try {
  const { admin } = await seed(browser, shots);
  await admin.close();
  await menus(browser, shots);
  await byok(browser);
  await purge(browser);
  await security(browser, shots);
  failed = summary();
} catch (e) {
  console.log(`FAIL ${e && e.stack ? e.stack : e}`);
  summary();
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
