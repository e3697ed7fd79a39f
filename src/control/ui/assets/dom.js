// Building pages from DOM nodes and text only (the policy forbids HTML strings), and the small
// pieces every view shares: tables, forms, messages and downloads.

/// An element: `attrs` are attributes, except `on*` functions (listeners) and `checked`,
/// `value`, `disabled`, `selected` (properties); children are nodes or text.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (["checked", "value", "disabled", "selected", "hidden"].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let ids = 0;
/// A labelled form field; `control` is an <input>, <select> or <textarea>.
export function field(label, control, hint) {
  const id = control.id || `f${++ids}`;
  control.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: v === value }, text);
    }),
  );
}

/// A table with a caption, column headings and rows of cells (nodes or text).
export function table(caption, headings, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

/// Shows a message in the notice area (read out by screen readers).
export function notice(text, kind = "info") {
  const n = document.getElementById("notice");
  n.className = `notice ${kind}`;
  n.textContent = text;
}

/// Runs an action, reporting its error in the notice area (and in `shown`, an element next to
/// the form that asked, when given: the notice is replaced by the next one, that stays until the
/// next attempt); returns its result.
export async function attempt(what, fn, shown) {
  if (shown) shown.hidden = true;
  try {
    const r = await fn();
    return r;
  } catch (e) {
    const text = `${what}: ${e.message}${e.code ? ` (${e.code})` : ""}`;
    notice(text, "error");
    if (shown) {
      shown.textContent = text;
      shown.hidden = false;
    }
    return undefined;
  }
}

/// A section with a heading.
export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

/// A button row.
export function actions(...buttons) {
  return h("div", { class: "actions", role: "group" }, ...buttons);
}

export function button(text, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, text);
}

/// A form whose submit runs `fn(form)` instead of navigating.
export function form(label, children, submitText, fn) {
  const f = h("form", { "aria-label": label, class: "form" }, children, h("div", { class: "actions" }, h("button", { type: "submit" }, submitText)));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const b = f.querySelector("button[type=submit]");
    b.disabled = true;
    try {
      await fn(f);
    } finally {
      b.disabled = false;
    }
  });
  return f;
}

/// Saves text the page fetched as a file (a certificate, CSR or public key in PEM).
export function saveText(filename, text, type = "application/x-pem-file") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
