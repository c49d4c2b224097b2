// The source view: a document's extracted text with one span highlighted by its offsets.

import { call } from "./api.js";
import { $, el } from "./dom.js";

export function bindSource() {
  $("source-close").addEventListener("click", () => $("source-view").close());
}

/**
 * Open `documentId` of `collection` with [start, end) highlighted. `quote`, when given, is
 * checked against the text at those offsets (a citation's promise), and a mismatch is shown.
 */
export async function openSource(collection, documentId, start, end, quote) {
  const dialog = $("source-view");
  const text = $("source-text");
  const warning = $("source-warning");
  $("source-title").textContent = "Loading…";
  $("source-meta").textContent = "";
  warning.hidden = true;
  text.replaceChildren();
  if (!dialog.open) dialog.showModal();
  try {
    const path = `/v1/collections/${encodeURIComponent(collection)}/documents/`;
    const doc = await call("GET", path + encodeURIComponent(documentId));
    const body = doc.text || "";
    $("source-title").textContent = doc.filename;
    $("source-meta").textContent =
      `${collection} · characters ${start}–${end} of ${body.length} · ${doc.chunks} excerpts`;
    if (quote !== undefined && body.slice(start, end) !== quote) {
      warning.textContent = "The quoted text does not match the document at these offsets.";
      warning.hidden = false;
    }
    const mark = el("mark", { className: "cited", text: body.slice(start, end) });
    text.replaceChildren(
      document.createTextNode(body.slice(0, start)),
      mark,
      document.createTextNode(body.slice(end)),
    );
    mark.scrollIntoView({ block: "center" });
  } catch (error) {
    $("source-title").textContent = "Cannot open the document";
    warning.textContent = error.describe ? error.describe() : String(error);
    warning.hidden = false;
  }
}
