// The console's shell: who the client certificate says you are, the menu, and the view the
// address names (#/keys, #/jobs/42, ...). Controls your role may not use are never drawn; the
// daemon refuses them anyway.
import { get } from "./api.js";
import { h, notice } from "./dom.js";
import * as credentials from "./credentials.js";
import * as keys from "./keys.js";
import * as jobs from "./jobs.js";
import * as logs from "./logs.js";
import * as admin from "./admin.js";

const views = { credentials, keys, jobs, logs, admin };
const RANK = { auditor: 0, operator: 1, admin: 2 };

let me = null;
let generation = 0;

/// What a view gets: who is calling, what they may do, the path's arguments, and whether it
/// is still the view on screen (long-polls stop when it is not).
function context(args) {
  const mine = ++generation;
  return {
    me,
    args,
    /// "operate" (admin or operator) or "admin".
    can: (what) => RANK[me.role] >= (what === "admin" ? 2 : 1),
    alive: () => mine === generation,
    go: (hash) => {
      location.hash = hash;
    },
  };
}

async function show() {
  const [name, ...args] = location.hash.replace(/^#\/?/, "").split("/");
  const view = views[name] ? name : "keys";
  for (const a of document.querySelectorAll("#menu a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  notice("");
  const ctx = context(args.map(decodeURIComponent));
  try {
    await views[view].render(main, ctx);
  } catch (e) {
    if (ctx.alive()) main.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load: ${e.message}`));
  }
}

async function start() {
  try {
    me = await get("/v1/whoami");
  } catch (e) {
    document.getElementById("whoami").textContent = "Not identified";
    document.getElementById("main").replaceChildren(
      h("p", { class: "error", role: "alert" }, `The daemon did not accept this client certificate: ${e.message}`),
    );
    return;
  }
  document.body.dataset.role = me.role;
  const who = document.getElementById("whoami");
  who.replaceChildren(
    h("span", { class: "identity", title: `certificate SHA-256 ${me.fingerprint}` }, me.identity),
    " ",
    h("span", { class: `role role-${me.role}` }, me.role),
  );
  window.addEventListener("hashchange", show);
  await show();
}

start();
