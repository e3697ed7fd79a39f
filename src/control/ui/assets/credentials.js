// Identity Management → Cloud Credentials: the list (fingerprint, expiry, certificate
// thumbprint), adding one with the client secret uploaded as a text file (read, sent once,
// never shown or kept) or a certificate generated in the HSM (certificate and CSR
// downloadable), setting the expiry, and deleting one (dual control).
import { get, post, patch, del, seg } from "./api.js";
import { h, field, table, notice, attempt, saveText, section, actions, button, form, select } from "./dom.js";
import { time } from "./time.js";

/// The secret in an uploaded text file, without one trailing newline (as byokctl reads it).
async function secretOf(file) {
  const text = await file.text();
  return text.replace(/\r?\n$/, "");
}

function addForm(ctx, reload) {
  const kind = select("kind", [["secret", "Client secret (upload a text file)"], ["certificate", "Certificate generated in the HSM"]], "secret");
  const file = h("input", { type: "file", name: "secret_file", accept: ".txt,text/plain" });
  const expires = h("input", { type: "text", name: "expires", placeholder: "2027-01-31T00:00:00Z", autocomplete: "off" });
  const days = h("input", { type: "number", name: "validity_days", min: 1, max: 3650, value: "365" });
  const check = h("label", { class: "check" }, h("input", { type: "checkbox", name: "verify", checked: true }), " Sign in with it now and refuse it if Entra ID does (untick only to stage an appliance that cannot reach Azure yet)");
  const secretFields = h("div", {}, field("Client secret file", file, "A plain text file holding the secret; it is sent once and never shown."), field("Secret expires (RFC 3339, optional)", expires), check);
  const certFields = h("div", { hidden: true }, field("Certificate validity (days)", days));
  kind.addEventListener("change", () => {
    secretFields.hidden = kind.value !== "secret";
    certFields.hidden = kind.value === "secret";
  });
  return form(
    "Add a credential",
    [
      field("Name", h("input", { type: "text", name: "name", required: true, pattern: "[0-9A-Za-z][0-9A-Za-z._\\-]{0,63}", autocomplete: "off" })),
      field("Tenant ID", h("input", { type: "text", name: "tenant_id", required: true, autocomplete: "off" })),
      field("Client (application) ID", h("input", { type: "text", name: "client_id", required: true, autocomplete: "off" })),
      field("Kind", kind),
      secretFields,
      certFields,
    ],
    "Add credential",
    async (f) => {
      const body = { name: f.elements.name.value.trim(), tenant_id: f.elements.tenant_id.value.trim(), client_id: f.elements.client_id.value.trim() };
      if (kind.value === "secret") {
        if (!file.files.length) {
          notice("Choose the file that holds the client secret", "error");
          return;
        }
        body.secret = await secretOf(file.files[0]);
        body.verify = f.elements.verify.checked;
        if (expires.value.trim()) body.expires = expires.value.trim();
      } else {
        body.certificate = true;
        body.validity_days = Number(days.value);
      }
      const done = await attempt("Add credential", () => post("/v1/credentials", body));
      // The secret leaves the page with the request: the body and the file choice are dropped.
      body.secret = undefined;
      f.reset();
      secretFields.hidden = false;
      certFields.hidden = true;
      if (done) {
        notice(`Credential ${body.name} added`);
        await reload();
      }
    },
  );
}

function expiryForm(name, reload) {
  const input = h("input", { type: "text", name: "expires", placeholder: "2027-01-31T00:00:00Z (empty clears it)", autocomplete: "off" });
  return form(`Set the expiry of ${name}`, [field(`New expiry of ${name} (RFC 3339)`, input)], "Set expiry", async () => {
    const v = input.value.trim();
    const ok = await attempt("Set expiry", () => patch(`/v1/credentials/${seg(name)}`, { expires: v || null }));
    if (ok) {
      notice(`Expiry of ${name} ${v ? `set to ${v}` : "cleared"}`);
      await reload();
    }
  });
}

async function thumbprint(c) {
  if (c.kind !== "certificate") return "—";
  try {
    const cert = await get(`/v1/credentials/${seg(c.name)}/certificate`);
    return h("code", { title: `x5t#S256 ${cert.x5t_s256 || ""}` }, cert.thumbprint || "");
  } catch {
    return "—";
  }
}

export async function render(main, ctx) {
  const editor = h("div", { class: "editor" });
  const reload = () => render(main, ctx);
  const { credentials } = await get("/v1/credentials");
  const rows = [];
  for (const c of credentials) {
    const acts = [];
    if (c.kind === "certificate") {
      acts.push(button("Download certificate", () => attempt("Certificate", async () => {
        const cert = await get(`/v1/credentials/${seg(c.name)}/certificate`);
        saveText(`${c.name}.crt.pem`, cert.certificate_pem);
      }), { "aria-label": `Download the certificate of ${c.name}` }));
      acts.push(button("Download CSR", () => attempt("CSR", async () => {
        const csr = await get(`/v1/credentials/${seg(c.name)}/certificate?format=csr`);
        saveText(`${c.name}.csr.pem`, csr.csr_pem);
      }), { "aria-label": `Download a CSR for ${c.name}` }));
    }
    if (ctx.can("admin")) {
      acts.push(button("Set expiry", () => {
        editor.replaceChildren(section(`Set expiry: ${c.name}`, expiryForm(c.name, reload)));
        editor.querySelector("input").focus();
      }, { "aria-label": `Set expiry of ${c.name}` }));
      acts.push(button("Delete", () => attempt("Delete", async () => {
        const r = await del(`/v1/credentials/${seg(c.name)}`);
        if (r.status === 202) notice(`Deletion of ${c.name} waits for a second admin's approval (approval ${r.body.approval.id}); it expires ${r.body.approval.expires_at}`);
        else notice(`Credential ${c.name} deleted`);
        await reload();
      }), { "aria-label": `Delete ${c.name}`, class: "danger" }));
    }
    rows.push([
      c.name,
      c.kind,
      h("code", {}, c.tenant_id),
      h("code", {}, c.client_id),
      h("code", {}, c.fingerprint),
      time(c.expires),
      await thumbprint(c),
      (c.groups || []).join(", "),
      time(c.created),
      actions(...acts),
    ]);
  }
  if (!ctx.alive()) return;
  main.replaceChildren(
    h("h1", {}, "Cloud Credentials"),
    credentials.length
      ? table("Credentials", ["Name", "Kind", "Tenant", "Client", "Fingerprint", "Expires", "Certificate thumbprint", "Groups", "Created", "Actions"], rows, { class: "credentials" })
      : h("p", {}, "No credentials yet."),
    editor,
    ctx.can("admin") ? section("Add a credential", addForm(ctx, reload)) : null,
  );
}
