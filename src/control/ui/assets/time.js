// Times as the console shows them: UTC, to the second, with the RFC 3339 text on hover.
import { h } from "./dom.js";

/// "2026-01-31 12:00:05 UTC" for an RFC 3339 time ("" for none).
export function utc(rfc3339) {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/// A <time> element: UTC text, RFC 3339 in `datetime` and as its title.
export function time(rfc3339) {
  if (!rfc3339) return h("span", { class: "none" }, "—");
  return h("time", { datetime: rfc3339, title: rfc3339 }, utc(rfc3339));
}
