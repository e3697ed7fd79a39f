// Logging and Reporting → Jobs: the live list with progress, and one job's steps as they
// happen (the API's long-poll), with cancel where the role allows it.
import { get, post, seg } from "./api.js";
import { h, table, actions, button, notice, attempt } from "./dom.js";
import { time } from "./time.js";

const FINAL = ["succeeded", "failed", "cancelled"];

function progress(job) {
  const p = job.progress || {};
  const fraction = job.state === "succeeded" ? 1 : Math.min(1, Math.max(0, p.fraction || 0));
  const percent = `${Math.round(fraction * 100)}%`;
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: 100, value: Math.round(fraction * 100), "aria-label": `job ${job.id} progress` }),
    " ",
    percent,
  );
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}`, "data-state": state }, state);
}

/// A job's card: what it is, its state, progress, steps and error; `ctx` decides cancel.
function card(job, ctx) {
  const steps = (job.steps || []).map((s) => h("li", {}, time(s.at), " ", s.message));
  const keyRows = (job.keys || []).map((k) => [k.name || k.key || "", k.state || "", k.version || ""]);
  return h(
    "div",
    { class: "job", "data-job": job.id, "data-state": job.state },
    h("h3", {}, `Job ${job.id}: ${job.title || job.kind}`),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "State"), h("dd", { class: "job-state" }, stateBadge(job.state)),
      h("dt", {}, "Progress"), h("dd", {}, progress(job)),
      h("dt", {}, "Group"), h("dd", {}, job.group || "—"),
      h("dt", {}, "Started by"), h("dd", {}, job.started_by || "—"),
      h("dt", {}, "Created"), h("dd", {}, time(job.created)),
      h("dt", {}, "Ended"), h("dd", {}, time(job.ended)),
      job.approval ? [h("dt", {}, "Approval"), h("dd", {}, job.approval)] : null,
    ),
    job.error ? h("p", { class: "error", role: "alert" }, job.error) : null,
    keyRows.length ? table("Keys of this job", ["Key", "State", "Azure version"], keyRows) : null,
    h("h4", {}, "Steps"),
    h("ol", { class: "steps", "aria-live": "polite" }, steps),
    ctx.can("operate") && !FINAL.includes(job.state)
      ? actions(
          button("Cancel job", () =>
            attempt("Cancel", async () => {
              await post(`/v1/jobs/${seg(job.id)}/cancel`);
              notice(`Cancel of job ${job.id} requested`);
            }),
          ),
        )
      : null,
  );
}

/// Shows job `id` in `box` and follows it with long-polls until it ends or the view goes.
export async function follow(id, box, ctx) {
  let job = await get(`/v1/jobs/${seg(id)}`);
  box.replaceChildren(card(job, ctx));
  while (ctx.alive() && !FINAL.includes(job.state)) {
    try {
      job = await get(`/v1/jobs/${seg(id)}?wait=25`);
    } catch (e) {
      if (!ctx.alive()) return job;
      notice(`Following job ${id}: ${e.message}`, "error");
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (ctx.alive()) box.replaceChildren(card(job, ctx));
  }
  return job;
}

/// A link to a job in the Jobs view.
export function jobLink(id) {
  return h("a", { href: `#/jobs/${seg(id)}` }, `job ${id}`);
}

function listRows(list) {
  return list.map((j) => [
    jobLink(j.id),
    j.title || j.kind,
    j.group || "",
    stateBadge(j.state),
    progress(j),
    j.started_by || "",
    time(j.created),
    time(j.ended),
  ]);
}

export async function render(main, ctx) {
  if (ctx.args[0]) {
    const box = h("div", {}, "Loading…");
    main.replaceChildren(h("h1", {}, "Jobs"), h("p", {}, h("a", { href: "#/jobs" }, "All jobs")), box);
    await follow(ctx.args[0], box, ctx);
    return;
  }
  const filter = h("select", { id: "job-state", name: "state" }, ["", "pending", "running", "waiting-retry", "waiting-approval", "succeeded", "failed", "cancelled"].map((s) => h("option", { value: s }, s || "all")));
  const holder = h("div", {});
  main.replaceChildren(
    h("h1", {}, "Jobs"),
    h("div", { class: "filters" }, h("label", { for: "job-state" }, "State"), filter),
    holder,
  );
  const refresh = async () => {
    const q = filter.value ? `?state=${seg(filter.value)}` : "";
    const { jobs } = await get(`/v1/jobs${q}`);
    if (!ctx.alive()) return;
    holder.replaceChildren(
      jobs.length
        ? table("Jobs, newest first", ["Job", "What", "Group", "State", "Progress", "Started by", "Created", "Ended"], listRows(jobs), { class: "jobs" })
        : h("p", {}, "No jobs."),
    );
  };
  filter.addEventListener("change", refresh);
  await refresh();
  // The list stays live while it is on screen.
  const tick = async () => {
    if (!ctx.alive()) return;
    await attempt("Refreshing jobs", refresh);
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}
