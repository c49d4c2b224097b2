// Embedder migration (admin): start, follow progress, cancel, roll back.

import { call } from "./api.js";
import { $, fillSelect, showError, sleep } from "./dom.js";
import { loadCollections } from "./collections.js";
import { on, selectedCollection, state } from "./state.js";

const POLL_MS = 500;
const MAX_BACKOFF_MS = 8000;
const JOB_DONE = new Set(["succeeded", "failed", "cancelled"]);
const jobKey = (collection) => `rag.migration.${collection}`;
let following = null; // job id being polled

export function bindMigration() {
  $("migration-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const collection = state.selected;
    const embedder = $("migration-embedder").value;
    if (!collection || !embedder) return;
    await start(collection, `/admin/v1/collections/${encodeURIComponent(collection)}/embedder-migrations`, { embedder });
  });
  $("rollback").addEventListener("click", async () => {
    const collection = state.selected;
    if (!collection) return;
    const path = `/admin/v1/collections/${encodeURIComponent(collection)}/embedder-migrations/rollback`;
    await start(collection, path, undefined);
  });
  $("migration-cancel").addEventListener("click", async () => {
    const jobId = $("migration-job-id").textContent;
    showError($("migration-error"), null);
    try {
      showJob(await call("POST", `/admin/v1/jobs/${encodeURIComponent(jobId)}/cancel`));
    } catch (error) {
      showError($("migration-error"), error);
    }
  });
  on("collections", render);
  on("selected", () => {
    render();
    const jobId = state.selected && sessionStorage.getItem(jobKey(state.selected));
    $("migration-job").hidden = true;
    if (jobId) follow(state.selected, jobId);
  });
}

function render() {
  const collection = selectedCollection();
  if (!collection) {
    $("migration-start").disabled = true;
    $("rollback").disabled = true;
    return;
  }
  $("current-embedder").textContent = collection.embedder;
  $("previous-embedder").textContent = collection.previous_embedder
    ? `(previous: ${collection.previous_embedder}, kept so you can go back)`
    : "";
  $("rollback").disabled = !collection.previous_embedder;
  fillSelect(
    $("migration-embedder"),
    state.embedders.filter((e) => e.id !== collection.embedder).map((e) => [e.id, e.id]),
  );
  $("migration-start").disabled = !$("migration-embedder").value;
}

async function start(collection, path, body) {
  showError($("migration-error"), null);
  try {
    const accepted = await call("POST", path, body);
    sessionStorage.setItem(jobKey(collection), accepted.job_id);
    await follow(collection, accepted.job_id);
  } catch (error) {
    showError($("migration-error"), error);
  }
}

async function follow(collection, jobId) {
  following = jobId;
  $("migration-job").hidden = false;
  $("migration-job-id").textContent = jobId;
  let failures = 0;
  for (;;) {
    let job;
    try {
      job = await call("GET", `/admin/v1/jobs/${encodeURIComponent(jobId)}`);
      failures = 0;
    } catch (error) {
      if (following !== jobId) return;
      showError($("migration-error"), error);
      // A missing job or a refused key will not change by asking again; a dropped
      // connection or a busy server (5xx, 429) will: keep following, more slowly.
      if (!retryable(error)) return;
      failures += 1;
      await sleep(Math.min(POLL_MS * 2 ** failures, MAX_BACKOFF_MS));
      continue;
    }
    if (following !== jobId || state.selected !== collection) return;
    showJob(job);
    if (JOB_DONE.has(job.status)) {
      await refreshCollections();
      return;
    }
    await sleep(POLL_MS);
  }
}

/** The job switched (or did not switch) the embedder: show the collection as it now is. */
async function refreshCollections() {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await loadCollections();
      return;
    } catch (error) {
      if (!retryable(error) || attempt === 5) {
        showError($("migration-error"), error);
        return;
      }
      await sleep(POLL_MS * 2 ** attempt);
    }
  }
}

const retryable = (error) => error.status === 0 || error.status === 429 || error.status >= 500;

function showJob(job) {
  const done = job.progress?.done ?? 0;
  const total = job.progress?.total ?? 0;
  $("migration-status").textContent = job.status;
  $("migration-progress").max = Math.max(total, 1);
  $("migration-progress").value = done;
  $("migration-count").textContent = `${done}/${total} excerpts`;
  $("migration-cancel").hidden = JOB_DONE.has(job.status);
  const messages = (job.errors || []).map((e) => e.message).join("; ");
  showError($("migration-error"), messages ? { describe: () => messages } : null);
}
