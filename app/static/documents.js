// Documents: drag-and-drop upload with one row per file and the job's progress, the list, delete.

import { call, uploadFiles } from "./api.js";
import { $, el, showError, sleep } from "./dom.js";
import { loadCollections } from "./collections.js";
import { isAdmin, on, selectedCollection, state } from "./state.js";

const POLL_MS = 400;
const JOB_DONE = new Set(["succeeded", "failed", "cancelled"]);
// A document's stored status, as a person reads it.
const SHOWN = { queued: "queued", processing: "processing", ready: "done", failed: "failed" };

/** The accepted file types, from the server (retrieval/parsing.py's table): listed in the drop
 * zone and given to the file picker, so the page never offers a type the server refuses. */
export async function loadFileTypes() {
  const shown = $("file-types");
  try {
    const body = await call("GET", "/v1/file-types");
    state.fileTypes = body.file_types || [];
  } catch {
    state.fileTypes = [];
  }
  const extensions = state.fileTypes.map((t) => `.${t.extension}`);
  if (!extensions.length) {
    shown.textContent = "The list of accepted file types could not be loaded.";
    return;
  }
  shown.textContent = `Accepted file types (${extensions.length}): ${extensions.join(" ")}`;
  $("file-input").accept = extensions.join(",");
}

export function bindDocuments() {
  const zone = $("drop-zone");
  // The zone is focusable: Enter or Space opens the file picker, as a click on its link does.
  zone.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    $("file-input").click();
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) startUpload(files);
  });
  $("file-input").addEventListener("change", (event) => {
    const files = [...event.target.files];
    event.target.value = "";
    if (files.length) startUpload(files);
  });
  $("refresh-documents").addEventListener("click", () => loadDocuments());
  on("selected", () => {
    $("uploads").replaceChildren();
    loadDocuments();
  });
  on("collections", heading);
  on("selected", heading);
  // Counts changed (an upload from elsewhere, a job moving on): the open list follows.
  on("collections", () => {
    if (!$("tab-documents").hidden) loadDocuments();
  });
}

function heading() {
  const chosen = selectedCollection();
  if (!chosen) return;
  $("documents-heading").textContent = isAdmin()
    ? `Add documents to “${chosen.name}”`
    : `Documents in “${chosen.name}”`;
}

export async function loadDocuments() {
  const collection = state.selected;
  const rows = $("document-rows");
  showError($("documents-error"), null);
  if (!collection) {
    rows.replaceChildren();
    $("documents-empty").hidden = true;
    return [];
  }
  try {
    const body = await call("GET", `/v1/collections/${encodeURIComponent(collection)}/documents`);
    if (collection !== state.selected) return [];
    const documents = body.documents || [];
    rows.replaceChildren(...documents.map((d) => documentRow(collection, d)));
    $("documents-empty").hidden = documents.length > 0;
    return documents;
  } catch (error) {
    showError($("documents-error"), error);
    return [];
  }
}

function documentRow(collection, doc) {
  const status = SHOWN[doc.status] || doc.status;
  const remove = el("button", { type: "button", className: "small danger", text: "Delete" });
  remove.hidden = !isAdmin();
  remove.addEventListener("click", async () => {
    // Two clicks: the first asks, the second deletes (no modal that a script could not see).
    if (remove.dataset.armed !== "yes") {
      remove.dataset.armed = "yes";
      remove.textContent = "Confirm delete";
      return;
    }
    remove.disabled = true;
    try {
      const path = `/admin/v1/collections/${encodeURIComponent(collection)}/documents/`;
      await call("DELETE", path + encodeURIComponent(doc.document_id));
      await loadDocuments();
      await loadCollections();
    } catch (error) {
      showError($("documents-error"), error);
      remove.disabled = false;
    }
  });
  return el(
    "tr",
    { dataset: { documentId: doc.document_id } },
    el("td", { text: doc.filename }),
    el("td", {}, el("span", { className: `status ${status}`, text: status }),
      doc.error ? el("span", { className: "muted", text: ` ${doc.error}` }) : null),
    el("td", { text: doc.chunks }),
    el("td", {}, remove),
  );
}

async function startUpload(files) {
  const collection = state.selected;
  if (!collection || !isAdmin()) return;
  const batch = new UploadBatch(files);
  $("uploads").prepend(batch.node);
  try {
    const accepted = await uploadFiles(collection, files);
    batch.accepted(accepted);
    // The collection now has documents waiting: its counts (and the Ask tab) say so at once.
    loadCollections().catch(() => {});
    await batch.follow(collection, accepted.job_id);
  } catch (error) {
    batch.failed(error);
  }
  await loadDocuments();
  await loadCollections().catch(() => {});
}

/** One upload: a row per file and the job's progress bar, followed until the job ends. */
class UploadBatch {
  constructor(files) {
    this.rows = new Map(); // filename or document_id -> row
    this.byId = new Map();
    this.progress = el("progress", { max: files.length, value: 0 });
    this.summary = el("span", { className: "muted", text: "uploading…" });
    this.error = el("p", { className: "error", role: "alert", hidden: true });
    this.list = el("ul", { className: "upload-rows" });
    for (const file of files) {
      const row = new FileRow(file.name);
      this.rows.set(file.name, row);
      this.list.append(row.node);
    }
    this.node = el(
      "section",
      { className: "upload-batch" },
      el("div", { className: "job-line" }, this.progress, this.summary),
      this.error,
      this.list,
    );
  }

  accepted(body) {
    for (const doc of body.documents || []) {
      const row = this.rows.get(doc.filename) || this.addRow(doc.filename);
      row.documentId = doc.document_id;
      this.byId.set(doc.document_id, row);
      // A new version of a file already in the collection: the old one goes once it is ready.
      if (doc.replaces?.length) row.note = "replaces the earlier version";
      row.set(doc.status);
    }
    for (const problem of body.errors || []) {
      (this.rows.get(problem.filename) || this.addRow(problem.filename)).set(
        "failed",
        problem.message,
      );
    }
    this.summary.textContent = `job ${body.job_id}: queued`;
  }

  addRow(filename) {
    const row = new FileRow(filename);
    this.rows.set(filename, row);
    this.list.append(row.node);
    return row;
  }

  async follow(collection, jobId) {
    for (;;) {
      const job = await call("GET", `/admin/v1/jobs/${encodeURIComponent(jobId)}`);
      const done = job.progress?.done ?? 0;
      const total = job.progress?.total ?? 0;
      this.progress.max = Math.max(total, 1);
      this.progress.value = total ? done : JOB_DONE.has(job.status) ? 1 : 0;
      // A queued job says how many uploads are ahead of it (`ahead`, null once it runs).
      const ahead = job.status === "queued" && job.ahead != null ? `, ${job.ahead} ahead` : "";
      this.summary.textContent = `job ${jobId}: ${job.status}${ahead} (${done}/${total})`;
      await this.refreshRows(collection, job);
      if (JOB_DONE.has(job.status)) {
        this.node.dataset.jobStatus = job.status;
        return job;
      }
      await sleep(POLL_MS);
    }
  }

  async refreshRows(collection, job) {
    // Per-file status in the job itself when the server reports it; otherwise the documents.
    // (`files`: one entry per uploaded file, GET /admin/v1/jobs/{id}.)
    let docs = Array.isArray(job.files) ? job.files.filter((f) => f.document_id) : null;
    if (!docs) {
      try {
        const path = `/v1/collections/${encodeURIComponent(collection)}/documents`;
        docs = (await call("GET", path)).documents || [];
      } catch {
        docs = [];
      }
    }
    for (const doc of docs) {
      const row = this.byId.get(doc.document_id);
      if (row && row.status !== "duplicate") row.set(doc.status, doc.error || doc.message);
    }
    for (const problem of job.errors || []) {
      const row =
        (problem.document_id && this.byId.get(problem.document_id)) ||
        this.rows.get(problem.filename);
      if (row) row.set("failed", problem.message);
    }
  }

  failed(error) {
    this.error.textContent = error.describe ? error.describe() : String(error);
    this.error.hidden = false;
    this.summary.textContent = "upload refused";
    for (const row of this.rows.values()) {
      if (row.status === "uploading") row.set("failed", "not uploaded");
    }
  }
}

class FileRow {
  constructor(filename) {
    this.status = "uploading";
    this.note = ""; // shown when there is no message
    this.badge = el("span", { className: "status uploading", text: "uploading" });
    this.message = el("span", { className: "muted" });
    this.node = el(
      "li",
      { className: "upload-row", dataset: { filename } },
      el("span", { className: "filename", text: filename }),
      this.badge,
      this.message,
    );
  }

  set(status, message) {
    const shown = SHOWN[status] || status;
    this.status = shown;
    this.badge.textContent = shown;
    this.badge.className = `status ${shown}`;
    this.node.dataset.status = shown;
    const shownMessage = message || this.note;
    this.message.textContent = shownMessage ? ` ${shownMessage}` : "";
  }
}
