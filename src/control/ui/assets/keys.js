// Key Management → Keys: the key groups (create one; Cloud → Synchronize, Force Rotation,
// Delete on Cloud Service, recover, purge, Check cloud state with its findings; an admin's
// export of a key as a .byok file for an offline import, under dual control, and recording the
// Azure version that import made), and a group's keys in the KMES's columns, a page at a time (a
// group may hold thousands), with Create → Random, Cloud → Synchronize and public key download.
import { get, post, seg } from "./api.js";
import { h, field, table, notice, attempt, section, actions, button, form, select, saveText } from "./dom.js";
import { time } from "./time.js";
import { follow, jobLink } from "./jobs.js";

const PAGE = 50;
const KEY_TYPES = ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521", "EC-P256K", "AES-128", "AES-192", "AES-256"];
const AES_ONLY_MANAGED_HSM = "AES keys (oct-HSM) only in a Managed HSM: Azure Key Vault does not accept them";

/// AES key types are offered only for a Managed HSM target; for a Key Vault they are disabled,
/// saying why (the daemon refuses them too).
function limitKeyTypes(type, service) {
  const managed = service.value === "managed_hsm";
  for (const o of type.options) {
    if (!o.value.startsWith("AES")) continue;
    o.disabled = !managed;
    o.title = managed ? "" : AES_ONLY_MANAGED_HSM;
  }
  if (!managed && type.value.startsWith("AES")) type.value = "RSA-2048";
}
const KEY_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];

/// Starts a job (or asks for an approval) with `call`, then follows it in `box`.
async function started(what, call, box, ctx, after) {
  const r = await attempt(what, call);
  if (!r) return;
  const job = r.body.job;
  const approval = r.body.approval;
  if (approval && approval.status === "pending") {
    notice(`${what}: waits for a second admin's approval (approval ${approval.id}, expires ${approval.expires_at})`);
    box.replaceChildren(h("p", { class: "pending" }, `${what} waits for approval ${approval.id} by a second admin (Administration → Approvals).`));
    return;
  }
  if (!job) {
    notice(`${what}: done`);
    return;
  }
  notice(`${what}: `, "info");
  document.getElementById("notice").append(jobLink(job.id), " started");
  const end = await follow(job.id, box, ctx);
  if (ctx.alive() && after) await after(end);
}

function groupForm(credentials, reload) {
  const type = select("key_type", KEY_TYPES, "RSA-2048");
  const exponent = select("exponent", [["65537", "65537 (F4)"], ["3", "3"]], "65537");
  const ops = h("fieldset", { class: "ops" }, h("legend", {}, "Key usage (empty: the key type's default)"),
    KEY_OPS.map((o) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "key_ops", value: o }), ` ${o}`)));
  type.addEventListener("change", () => {
    exponent.disabled = !type.value.startsWith("RSA");
  });
  // The target: a Key Vault or a Managed HSM pool, named in the same field.
  const service = select("service", [["key_vault", "Azure Key Vault"], ["managed_hsm", "Azure Key Vault Managed HSM"]], "key_vault");
  const target = field("Azure vault name", h("input", { type: "text", name: "vault", required: true, autocomplete: "off" }), "The vault's name, as in <name>.vault.azure.net");
  service.addEventListener("change", () => {
    const hsm = service.value === "managed_hsm";
    target.querySelector("label").textContent = hsm ? "Managed HSM name" : "Azure vault name";
    target.querySelector(".hint").textContent = hsm
      ? "The Managed HSM pool's name, as in <name>.managedhsm.azure.net; the app needs the pool's local RBAC role Managed HSM Crypto User"
      : "The vault's name, as in <name>.vault.azure.net";
  });
  service.addEventListener("change", () => limitKeyTypes(type, service));
  limitKeyTypes(type, service);
  return form(
    "Create a key group",
    [
      field("Name", h("input", { type: "text", name: "name", required: true, pattern: "[0-9A-Za-z\\-]{1,127}", autocomplete: "off" })),
      field("Service", service),
      field("Credential", select("credential", credentials.map((c) => c.name), credentials[0] && credentials[0].name)),
      target,
      field("Key type and length", type, "AES-128/192/256 (oct-HSM) only in a Managed HSM"),
      field("Exponent (RSA)", exponent),
      ops,
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "verify", checked: true }), " Check the vault with Azure now: it must exist and this app must be allowed to read it (untick only to stage an appliance that cannot reach Azure yet)"),
      h("fieldset", { class: "rotation" }, h("legend", {}, "Rotation"),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "rotation_enabled" }), " Rotate automatically"),
        field("Rotate every (months)", h("input", { type: "number", name: "rotate_every_months", min: 1, max: 120, value: "12" })),
        field("Keep valid (months)", h("input", { type: "number", name: "keep_valid_months", min: 1, max: 120, value: "24" }))),
    ],
    "Create group",
    async (f) => {
      const e = f.elements;
      const body = {
        name: e.name.value.trim(),
        credential: e.credential.value,
        [service.value === "managed_hsm" ? "managed_hsm" : "vault"]: e.vault.value.trim(),
        key_type: type.value,
        verify: e.verify.checked,
        rotation: { enabled: e.rotation_enabled.checked, rotate_every_months: Number(e.rotate_every_months.value), keep_valid_months: Number(e.keep_valid_months.value) },
      };
      if (type.value.startsWith("RSA")) body.exponent = Number(exponent.value);
      const chosen = [...f.querySelectorAll("input[name=key_ops]:checked")].map((i) => i.value);
      if (chosen.length) body.key_ops = chosen;
      if (await attempt("Create group", () => post("/v1/groups", body))) {
        notice(`Key group ${body.name} created`);
        await reload(body.name);
      }
    },
  );
}

function rotation(r) {
  if (!r) return "";
  return `${r.enabled ? "on" : "off"}: every ${r.rotate_every_months} mo, valid ${r.keep_valid_months} mo`;
}

function findings(g) {
  const d = g.drift;
  if (!d) return h("p", { class: "drift" }, "Cloud state not checked yet.");
  const list = d.findings || [];
  return h(
    "div",
    { class: "drift" },
    h("p", {}, "Cloud state checked ", time(d.checked), ` (${d.azure_versions ?? 0} Azure versions): `, list.length ? `${list.length} finding(s)` : "no findings"),
    list.length ? table("Findings of the last cloud check", ["Finding", "Key", "Version", "Message"], list.map((x) => [x.code, x.key || "", x.version || "", x.message])) : null,
  );
}

/// The keys table, `PAGE` rows at a time.
function keysTable(group, keys, ctx, jobBox) {
  let page = 0;
  const pages = Math.max(1, Math.ceil(keys.length / PAGE));
  const body = h("tbody", {});
  const where = h("span", { class: "page", "aria-live": "polite" });
  const prev = button("Previous page", () => draw(page - 1));
  const next = button("Next page", () => draw(page + 1));
  function row(k) {
    const acts = [
      button("Public key", () => attempt("Public key", async () => {
        const p = await get(`/v1/groups/${seg(group)}/keys/${seg(k.name)}/public`);
        saveText(`${group}-${k.name}.pub.pem`, p.pem);
      }), { "aria-label": `Download the public key of ${k.name}` }),
    ];
    if (ctx.can("operate")) {
      acts.push(button("Synchronize", () => started(`Synchronize ${k.name}`, () => post(`/v1/groups/${seg(group)}/keys/${seg(k.name)}/sync`), jobBox, ctx, () => ctx.alive() && show(group, ctx)), { "aria-label": `Synchronize ${k.name}` }));
    }
    return h("tr", { "data-key": k.name },
      [k.name, k.group, k.version ? h("code", { class: "version" }, k.version) : h("span", { class: "none" }, "not on cloud"), k.storage, k.key_type, k.algorithm, h("code", {}, k.check_digits), time(k.created), actions(...acts)].map((c) => h("td", {}, c)));
  }
  function draw(n) {
    page = Math.min(Math.max(0, n), pages - 1);
    body.replaceChildren(...keys.slice(page * PAGE, (page + 1) * PAGE).map(row));
    where.textContent = `Page ${page + 1} of ${pages} (${keys.length} keys)`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }
  draw(0);
  return h("div", { class: "keys" },
    h("table", { class: "keys-table" },
      h("caption", {}, `Keys of ${group}`),
      h("thead", {}, h("tr", {}, ["Name", "Key Group", "Version", "Storage", "Key type", "Algorithm", "Check Digits", "Created", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
      body),
    h("div", { class: "pager" }, prev, where, next));
}

/// Export a key as a .byok file (admin): the KEK's public key file (as `az keyvault key download
/// --encoding PEM` writes it) and its versioned kid; a second admin approves, then the requester
/// downloads the file from Administration → Approvals.
function exportForm(base, keys) {
  const key = select("export_key", keys.map((k) => k.name), keys[0] && keys[0].name);
  const pem = h("input", { type: "file", name: "kek_pem", accept: ".pem,application/x-pem-file", required: true });
  const kid = h("input", { type: "text", name: "kek_kid", required: true, autocomplete: "off", size: 60 });
  return form("Export as .byok file", [
    field("Key", key),
    field("KEK public key (PEM)", pem, "From az keyvault key download --encoding PEM: an RSA 2048, 3072 or 4096 key exchange key in this group's vault or Managed HSM"),
    field("KEK key id", kid, "The KEK's versioned key identifier as az keyvault key show prints it: the vault's or Managed HSM pool's /keys/<name>/<version> URL"),
  ], "Export as .byok file", async () => {
    const file = pem.files && pem.files[0];
    if (!file) return;
    const text = await file.text();
    const r = await attempt(`Export ${key.value} as .byok`, () => post(`${base}/keys/${seg(key.value)}/export-byok`, { kek_pem: text, kek_kid: kid.value.trim() }));
    if (r) notice(`Export ${key.value} as .byok: waits for a second admin's approval (approval ${r.body.approval.id}); download it from Administration → Approvals once approved`);
  });
}

/// The Azure version in what the officer pasted: the kid `az keyvault key import` printed (the
/// URL `<vault>.vault.azure.net/keys/<name>/<version>`) or its version alone. A kid of another
/// Azure key than the group's own (named after the group) is refused here, saying so; the daemon
/// checks the rest with Azure.
function importedVersion(text, group) {
  const s = text.trim();
  if (!s.includes("/")) return s;
  let url = null;
  try {
    url = new URL(s);
  } catch {
    throw new Error(`${s} is neither a key identifier (…/keys/${group}/<version>) nor a version`);
  }
  const [keys, name, version, ...rest] = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (keys !== "keys" || !name || !version || rest.length) {
    throw new Error(`${s} is not a versioned key identifier (…/keys/${group}/<version>)`);
  }
  if (name.toLowerCase() !== group.toLowerCase()) {
    throw new Error(`${s} is Azure key ${name}, but key group ${group}'s Azure key is named ${group}; nothing was recorded`);
  }
  return version;
}

/// Record a .byok import (the last step of an offline transfer): the version the officer's
/// `az keyvault key import --byok-file` made becomes the key's version. byokd reads it from Azure
/// and records it only if Azure shows the HSM key's public key; a refusal is shown under the form
/// as well as in the notice area.
function recordForm(group, base, keys, again) {
  const key = select("record_key", keys.map((k) => k.name), keys[0] && keys[0].name);
  const kid = h("input", { type: "text", name: "imported_kid", required: true, autocomplete: "off", spellcheck: "false", size: 60 });
  const refusal = h("p", { class: "error", role: "alert", hidden: true });
  return form("Record a .byok import", [
    field("Key", key),
    field("Imported key id or version", kid, `The kid az keyvault key import printed (…/keys/${group}/<version> in this group's vault or Managed HSM), or its version alone: 32 hex characters`),
    refusal,
  ], "Record import", async () => {
    const name = key.value;
    const r = await attempt(`Record the import of ${name}`, () => post(`${base}/keys/${seg(name)}/record-import`, { version: importedVersion(kid.value, group) }), refusal);
    if (!r) return;
    const prev = r.body.previous_version;
    notice(`Recorded Azure version ${r.body.key.version} for key ${name}${prev ? ` (it was ${prev})` : ""}`);
    await again();
  });
}

/// One group: its facts, actions, findings and keys.
async function show(group, ctx) {
  const holder = document.getElementById("group-detail");
  const jobBox = document.getElementById("job-follow");
  if (!holder || !jobBox) return;
  const began = performance.now();
  const [g, { keys }, groups] = await Promise.all([get(`/v1/groups/${seg(group)}`), get(`/v1/groups/${seg(group)}/keys`), groupsTable(group)]);
  if (!ctx.alive()) return;
  document.getElementById("groups").replaceChildren(groups);
  const again = () => ctx.alive() && show(group, ctx);
  const base = `/v1/groups/${seg(group)}`;
  const acts = [];
  if (ctx.can("operate")) {
    const name = h("input", { type: "text", name: "key_name", required: true, pattern: "[0-9A-Za-z\\-]{1,127}", autocomplete: "off" });
    acts.push(form("Create → Random", [field("New key name", name)], "Create → Random", async () => {
      const r = await attempt("Create key", () => post(`${base}/keys`, { name: name.value.trim() }));
      if (r) {
        notice(`Key ${name.value.trim()} generated in the HSM (check digits ${r.body.check_digits})`);
        await again();
      }
    }));
    acts.push(actions(
      button("Cloud → Synchronize", () => started(`Synchronize ${group}`, () => post(`${base}/sync`), jobBox, ctx, again)),
      button("Cloud → Force Rotation", () => started(`Force rotation of ${group}`, () => post(`${base}/rotate`), jobBox, ctx, again)),
      button("Check cloud state", () => started(`Check cloud state of ${group}`, () => post(`${base}/check`), jobBox, ctx, again)),
      button("Recover", () => started(`Recover ${group}`, () => post(`${base}/recover`), jobBox, ctx, again)),
      ctx.can("admin") ? button("Cloud → Delete on Cloud Service", () => started(`Delete ${group} on the cloud service`, () => post(`${base}/delete-cloud`), jobBox, ctx, again), { class: "danger" }) : null,
      ctx.can("admin") ? button("Purge", () => started(`Purge ${group}`, () => post(`${base}/purge`), jobBox, ctx, again), { class: "danger" }) : null,
    ));
  }
  if (ctx.can("admin") && keys.length) acts.push(exportForm(base, keys));
  // Recording is an operator's call in the API (role operator), like a sync.
  if (ctx.can("operate") && keys.length) acts.push(recordForm(group, base, keys, again));
  holder.replaceChildren(
    section(`Key group ${g.name}`,
      h("dl", { class: "facts" },
        h("dt", {}, "Service"), h("dd", {}, g.target === "managed_hsm" ? "Azure Key Vault Managed HSM" : "Azure Key Vault"),
        h("dt", {}, g.target === "managed_hsm" ? "Managed HSM" : "Vault"), h("dd", {}, g.target === "managed_hsm" ? g.managed_hsm : g.vault),
        h("dt", {}, "Credential"), h("dd", {}, g.credential),
        h("dt", {}, "Key type"), h("dd", {}, `${g.key_type} (${g.algorithm}${g.exponent ? `, e=${g.exponent}` : ""})`),
        h("dt", {}, "Key usage"), h("dd", {}, (g.key_ops || []).join(", ")),
        h("dt", {}, "Rotation"), h("dd", {}, rotation(g.rotation)),
        h("dt", {}, "Last rotated"), h("dd", {}, time(g.last_rotated)),
        h("dt", {}, "Next rotation"), h("dd", {}, time(g.next_rotation))),
      ...acts,
      findings(g),
      keysTable(group, keys, ctx, jobBox)),
  );
  // For the browser test's benchmark: from asking for the keys to the first page on screen.
  holder.dataset.renderMs = String(Math.round(performance.now() - began));
}

/// The key groups table.
async function groupsTable(current) {
  const { groups } = await get("/v1/groups");
  const rows = groups.map((g) => [
    h("a", { href: `#/keys/${seg(g.name)}`, "aria-current": g.name === current ? "true" : null }, g.name),
    g.credential,
    g.target === "managed_hsm" ? `${g.managed_hsm} (Managed HSM)` : g.vault,
    g.key_type,
    g.algorithm,
    String(g.keys),
    rotation(g.rotation),
    time(g.next_rotation),
    time(g.created),
  ]);
  return groups.length
    ? table("Key groups", ["Key group", "Credential", "Vault or Managed HSM", "Key type", "Algorithm", "Keys", "Rotation", "Next rotation", "Created"], rows, { class: "groups" })
    : h("p", {}, "No key groups yet.");
}

export async function render(main, ctx) {
  const group = ctx.args[0];
  const [groups, creds] = await Promise.all([groupsTable(group), ctx.can("operate") ? get("/v1/credentials") : { credentials: [] }]);
  if (!ctx.alive()) return;
  main.replaceChildren(
    h("h1", {}, "Keys"),
    h("div", { id: "groups" }, groups),
    h("div", { id: "job-follow", class: "job-follow", "aria-live": "polite" }),
    h("div", { id: "group-detail" }),
    ctx.can("operate") ? section("Create a key group", groupForm(creds.credentials, (name) => ctx.go(`#/keys/${seg(name)}`))) : null,
  );
  if (group) await show(group, ctx);
}
