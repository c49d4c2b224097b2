// Embedder migration (admin): start, follow progress, cancel, roll back.

import { call } from "./api.js";
import { $, fillSelect, showError, sleep } from "./dom.js";
import { loadCollections } from "./collections.js";
import { on, selectedCollection, state } from "./state.js";

const POLL_MS = 500;
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
  if (!collection) return;
  $("current-embedder").textContent = collection.embedder;
  $("previous-embedder").textContent = collection.previous_embedder
    ? `(previous: ${collection.previous_embedder}, kept for rollback)`
    : "";
  $("rollback").disabled = !collection.previous_embedder;
  fillSelect(
    $("migration-embedder"),
    state.embedders.filter((e) => e.id !== collection.embedder).map((e) => [e.id, e.id]),
  );
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
  for (;;) {
    let job;
    try {
      job = await call("GET", `/admin/v1/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      showError($("migration-error"), error);
      return;
    }
    if (following !== jobId || state.selected !== collection) return;
    showJob(job);
    if (JOB_DONE.has(job.status)) {
      await loadCollections().catch(() => {});
      return;
    }
    await sleep(POLL_MS);
  }
}

function showJob(job) {
  const done = job.progress?.done ?? 0;
  const total = job.progress?.total ?? 0;
  $("migration-status").textContent = job.status;
  $("migration-progress").max = Math.max(total, 1);
  $("migration-progress").value = done;
  $("migration-count").textContent = `${done}/${total} chunks`;
  $("migration-cancel").hidden = JOB_DONE.has(job.status);
  const messages = (job.errors || []).map((e) => e.message).join("; ");
  showError($("migration-error"), messages ? { describe: () => messages } : null);
}
