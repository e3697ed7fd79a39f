// Logging and Reporting → System Logs: the service selector ("Azure Service"), level, text,
// group, job and time filters, paging, Export File (JSON Lines or CSV download) and the
// chain verification with its result.
import { get, query } from "./api.js";
import { h, field, table, section, actions, button, select, attempt } from "./dom.js";
import { time } from "./time.js";

const SERVICES = [["", "All services"], ["azure", "Azure Service"], ["hsm", "HSM"], ["control", "Control"], ["jobs", "Jobs"], ["system", "System"]];

export async function render(main, ctx) {
  const inputs = {
    service: select("service", SERVICES, ""),
    level: select("level", [["", "Any level"], ["info", "INFO and above"], ["warn", "WARN and above"], ["error", "ERROR"]], ""),
    text: h("input", { type: "search", name: "text", autocomplete: "off" }),
    group: h("input", { type: "text", name: "group", autocomplete: "off" }),
    job: h("input", { type: "number", name: "job", min: 0 }),
    since: h("input", { type: "text", name: "since", placeholder: "2026-01-31T00:00:00Z", autocomplete: "off" }),
    until: h("input", { type: "text", name: "until", placeholder: "2026-01-31T23:59:59Z", autocomplete: "off" }),
  };
  const perPage = select("limit", ["10", "50", "100", "500"], "50");
  const filters = () => Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.value.trim()]));
  const results = h("div", { class: "log-results" });
  const format = select("format", [["jsonl", "JSON Lines"], ["csv", "CSV"]], "jsonl");
  const exportLink = h("a", { class: "button", id: "export-file" }, "Export File");
  const verdict = h("div", { class: "verdict", role: "status", "aria-live": "polite" });
  // The sequence numbers each shown page started after, for "Previous page".
  let afters = [0];

  function updateExport() {
    const f = { ...filters(), format: format.value };
    exportLink.setAttribute("href", `/v1/logs/export${query(f)}`);
    exportLink.setAttribute("download", `byokd-log.${format.value}`);
  }

  async function load(after) {
    const page = await get(`/v1/logs${query({ ...filters(), after, limit: perPage.value })}`);
    if (!ctx.alive()) return;
    const rows = page.records.map((r) => [
      String(r.seq),
      time(r.ts),
      r.service,
      h("span", { class: `level level-${r.level}` }, r.level),
      r.event || "",
      r.identity || "",
      r.group || "",
      r.job !== undefined && r.job !== null ? h("a", { href: `#/jobs/${r.job}` }, String(r.job)) : "",
      r.message,
    ]);
    const n = afters.length;
    results.replaceChildren(
      rows.length ? table("Service log records, oldest first", ["Seq", "Time (UTC)", "Service", "Level", "Event", "Identity", "Group", "Job", "Message"], rows, { class: "log" }) : h("p", {}, "No records match."),
      h("div", { class: "pager" },
        button("First page", () => { afters = [0]; load(0); }, { disabled: n <= 1 }),
        button("Previous page", () => { afters.pop(); load(afters[afters.length - 1]); }, { disabled: n <= 1 }),
        h("span", { class: "page" }, `Page ${n}`),
        button("Next page", () => { afters.push(page.next_after); load(page.next_after); }, { disabled: !page.more })),
    );
  }

  const apply = (ev) => {
    if (ev) ev.preventDefault();
    afters = [0];
    updateExport();
    attempt("Query the log", () => load(0));
  };
  const filterForm = h("form", { class: "filters", "aria-label": "Log filters", onsubmit: apply },
    field("Service", inputs.service), field("Level", inputs.level), field("Text", inputs.text),
    field("Key group", inputs.group), field("Job", inputs.job), field("Since (RFC 3339)", inputs.since), field("Until (RFC 3339)", inputs.until), field("Records per page", perPage),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply filters")));
  for (const i of Object.values(inputs)) i.addEventListener("change", updateExport);
  format.addEventListener("change", updateExport);
  updateExport();

  main.replaceChildren(
    h("h1", {}, "System Logs"),
    filterForm,
    results,
    section("Export and verify",
      h("div", { class: "row" }, field("Export format", format), exportLink),
      actions(button("Verify the log chain", () => attempt("Verify", async () => {
        const v = await get("/v1/logs/verify");
        const d = v.verdict || {};
        verdict.className = `verdict ${v.ok ? "ok" : "broken"}`;
        verdict.textContent = v.ok
          ? `Chain intact: ${d.checked} records checked (${d.first_seq ?? "-"} to ${d.last_seq ?? "-"}).`
          : `Chain BROKEN at record ${d.broken && d.broken.seq}: ${d.broken && d.broken.reason}`;
      }))),
      verdict),
  );
  await load(0);
}
