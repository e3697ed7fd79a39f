// Administration: the designated device (on/off), the daemon's status (HSM, state, wrap
// strategy), and the approvals queue: who asked for what and until when, approved or rejected
// by a second admin, with the started job followed live; the requester of an approved .byok
// export downloads its file here (and records the imported version on the Keys page).
import { get, put, post, seg } from "./api.js";
import { h, table, section, actions, button, notice, attempt, saveText } from "./dom.js";
import { time } from "./time.js";
import { follow, jobLink, stateBadge } from "./jobs.js";

function status(health) {
  const hsm = health.hsm || {};
  const state = health.state || {};
  const facts = [
    ["Version", health.version],
    ["Ready", health.ready ? "yes" : "no"],
    ["Degraded", health.degraded ? "yes" : "no"],
    ["HSM", hsm.ready ? "ready" : `not ready${hsm.detail ? `: ${hsm.detail}` : ""}`],
    ["Token", [hsm.token, hsm.model, hsm.serial].filter(Boolean).join(" · ")],
    ["Wrap strategy", hsm.wrap_strategy || "none usable"],
    ["Wrap self-test", hsm.wrap_summary || ""],
    ["State", Object.entries(state).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")],
  ];
  return h("dl", { class: "facts", id: "daemon-status" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v || "—")]));
}

function designated(d, health, ctx, reload) {
  const toggle = h("input", { type: "checkbox", id: "designated", checked: d.designated, disabled: !ctx.can("admin") });
  toggle.addEventListener("change", () => attempt("Designated device", async () => {
    const r = await put("/v1/config/designated", { designated: toggle.checked });
    notice(`This appliance is ${r.body.designated ? "now" : "no longer"} the designated device`);
    await reload();
  }));
  const source = health.designated_source === "api"
    ? `set by an admin through the API (overrides designated = ${health.designated_file ? "true" : "false"} in byokd.toml)`
    : "the configuration file (designated in byokd.toml)";
  return h("div", { class: "designated" },
    h("label", { class: "check", for: "designated" }, toggle, " This appliance is the designated device (it may change the cloud)"),
    h("p", { class: "hint" }, `Value: ${d.designated ? "on" : "off"}; source: ${source}.`));
}

function approvals(list, ctx, jobBox, reload) {
  const rows = list.map((a) => {
    const acts = [];
    if (ctx.can("admin") && a.status === "pending") {
      if (a.requested_by !== ctx.me.identity) {
        acts.push(button("Approve", () => attempt("Approve", async () => {
          const r = await post(`/v1/approvals/${seg(a.id)}/approve`);
          notice(`Approved ${a.id}: ${a.summary}`);
          const job = r.body.job || (r.body.job_id ? { id: r.body.job_id } : null);
          await reload();
          if (job) await follow(job.id, jobBox, ctx);
        }), { "aria-label": `Approve ${a.summary}` }));
      }
      const verb = a.requested_by === ctx.me.identity ? "Withdraw" : "Reject";
      acts.push(button(verb, () => attempt(verb, async () => {
        await post(`/v1/approvals/${seg(a.id)}/reject`);
        notice(`${verb === "Withdraw" ? "Withdrew" : "Rejected"} ${a.id}: ${a.summary}`);
        await reload();
      }), { "aria-label": `${verb} ${a.summary}`, class: "danger" }));
    }
    if (a.status === "approved" && a.action.kind === "export_byok" && a.requested_by === ctx.me.identity) {
      acts.push(button("Download .byok", () => attempt("Download .byok", async () => {
        const f = await get(`/v1/approvals/${seg(a.id)}/byok-file`);
        saveText(`${f.group}-${f.key}.byok`, f.byok, "application/json");
        notice(`Saved ${f.group}-${f.key}.byok: import it with az keyvault key import --byok-file, then record the version it made in Keys → ${f.group} → Record a .byok import (or byokctl key record-import)`);
      }), { "aria-label": `Download the .byok file of ${a.summary}` }));
    }
    return [
      h("code", {}, a.id),
      a.summary,
      a.requested_by,
      time(a.requested_at),
      time(a.expires_at),
      stateBadge(a.status),
      a.decided_by ? [a.decided_by, " ", time(a.decided_at)] : "",
      a.job_id ? jobLink(a.job_id) : "",
      actions(...acts),
    ];
  });
  return rows.length
    ? table("Approvals, newest first", ["Approval", "What", "Asked by", "Asked at", "Expires", "Status", "Decided", "Job", "Actions"], rows, { class: "approvals" })
    : h("p", {}, "No approvals.");
}

export async function render(main, ctx) {
  const jobBox = h("div", { class: "job-follow", "aria-live": "polite" });
  const queue = h("div", {});
  const filter = h("select", { id: "approval-status" }, ["pending", "", "approved", "rejected", "expired", "failed"].map((s) => h("option", { value: s }, s || "all")));
  const reloadQueue = async () => {
    const q = filter.value ? `?status=${seg(filter.value)}` : "";
    const { approvals: list } = await get(`/v1/approvals${q}`);
    if (ctx.alive()) queue.replaceChildren(approvals(list, ctx, jobBox, reloadQueue));
  };
  filter.addEventListener("change", () => attempt("Approvals", reloadQueue));
  const desigBox = h("div", {});
  const reloadDesignated = async () => {
    const [d, health] = await Promise.all([get("/v1/config/designated"), get("/v1/health")]);
    if (ctx.alive()) desigBox.replaceChildren(designated(d, health, ctx, reloadDesignated));
  };
  const health = await get("/v1/health");
  if (!ctx.alive()) return;
  main.replaceChildren(
    h("h1", {}, "Administration"),
    section("You", h("p", { id: "me" }, `${ctx.me.identity} (${ctx.me.role}), certificate ${ctx.me.cn ? `CN ${ctx.me.cn}, ` : ""}SHA-256 `, h("code", {}, ctx.me.fingerprint))),
    section("Approvals queue", h("div", { class: "filters" }, h("label", { for: "approval-status" }, "Status"), filter), queue, jobBox),
    section("Designated device", desigBox),
    section("Daemon status", status(health)),
  );
  await Promise.all([reloadQueue(), reloadDesignated()]);
  // The queue stays current while it is on screen.
  const tick = async () => {
    if (!ctx.alive()) return;
    if (!jobBox.firstChild) await attempt("Refreshing approvals", reloadQueue);
    setTimeout(tick, 3000);
  };
  setTimeout(tick, 3000);
}
