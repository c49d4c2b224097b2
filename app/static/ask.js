// Ask: the question form and the answer, built up live from the query's server-sent events.

import { call, streamQuery } from "./api.js";
import { $, clear, el, fillSelect, showError } from "./dom.js";
import { select } from "./collections.js";
import { openSource } from "./source.js";
import { on, state } from "./state.js";

const STEP_LABELS = {
  retrieval: "retrieved passages; judging relevance…",
  relevance: "judged relevance; choosing evidence…",
  evidence: "chose evidence; writing the analysis…",
  analysis: "analysis written; answering…",
  answer: "answered",
};

export function bindAsk() {
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  $("ask-collection").addEventListener("change", (event) => select(event.target.value));
  on("collections", (collections) => {
    fillSelect(
      $("ask-collection"),
      collections.map((c) => [c.name, c.name]),
      state.selected,
    );
    updateAskButton();
  });
  on("selected", (name) => {
    if (name) $("ask-collection").value = name;
    updateAskButton();
  });
}

let asking = false; // a question's stream is open

/** Ask is enabled once there is a collection to ask, and not while an answer streams in. */
function updateAskButton() {
  $("ask-button").disabled = asking || !$("ask-collection").value;
}

export async function loadAdapters() {
  try {
    const body = await call("GET", "/v1/adapters");
    const adapters = body.adapters || [];
    fillSelect($("ask-adapter"), [
      ["", "base model"],
      ...adapters.map((a) => [a.name, `${a.name} (on ${a.base_model})`]),
    ]);
  } catch {
    fillSelect($("ask-adapter"), [["", "base model"]]);
  }
}

/** What one run has seen so far: hits by chunk id, evidence by id. */
class Run {
  constructor(collection) {
    this.collection = collection;
    this.hits = new Map();
    this.evidence = new Map();
    this.ended = false;
  }
}

async function ask() {
  const collection = $("ask-collection").value;
  const question = $("question").value.trim();
  if (!collection || !question) return;
  const body = { collection, question };
  const mode = $("ask-mode").value;
  const adapter = $("ask-adapter").value;
  const topK = Number.parseInt($("ask-top-k").value, 10);
  if (mode) body.mode = mode;
  if (adapter) body.adapter = adapter;
  if (Number.isFinite(topK)) body.top_k = topK;

  resetView();
  const run = new Run(collection);
  asking = true;
  updateAskButton();
  $("answer-view").dataset.state = "running";
  $("run-step").textContent = "retrieving…";
  try {
    await streamQuery(body, (name, data) => handle(run, name, data));
    if (!run.ended) {
      fail({ describe: () => "stream_ended: the answer stream stopped before it finished" });
    }
  } catch (error) {
    fail(error);
  } finally {
    asking = false;
    updateAskButton();
  }
}

function fail(error) {
  $("run-step").textContent = "failed";
  $("answer-view").dataset.state = "error";
  showError($("ask-error"), error);
}

function resetView() {
  $("answer-view").hidden = false;
  for (const id of ["answer", "analysis", "run-meta", "run-step"]) $(id).textContent = "";
  for (const id of ["citations", "evidence", "hits", "timings"]) clear($(id));
  for (const id of ["cached-badge", "source-badge", "no-support"]) $(id).hidden = true;
  showError($("ask-error"), null);
}

function handle(run, name, data) {
  if (name in STEP_LABELS) $("run-step").textContent = STEP_LABELS[name];
  if (name === "retrieval") showHits(run, data.hits || []);
  else if (name === "relevance") showRelevance(data.relevance || []);
  else if (name === "evidence") showEvidence(run, data.evidence || []);
  else if (name === "analysis") showAnalysis(run, data.analysis || "");
  else if (name === "answer") showAnswer(run, data);
  else if (name === "done") finish(run, data);
  else if (name === "error") {
    run.ended = true;
    const error = data.error || {};
    fail({ describe: () => `${error.code || "error"}: ${error.message || "the query failed"}` });
  }
}

function showHits(run, hits) {
  const list = $("hits");
  list.replaceChildren(
    ...hits.map((hit) => {
      run.hits.set(hit.chunk_id, hit);
      return el(
        "li",
        { className: "hit", dataset: { chunkId: hit.chunk_id } },
        el(
          "div",
          { className: "hit-head" },
          el("button", {
            type: "button",
            className: "link",
            text: hit.filename,
            onClick: () => openSource(run.collection, hit.document_id, hit.start, hit.end),
          }),
          el("span", { className: "score", text: `score ${Number(hit.score).toFixed(3)}` }),
          el("span", { className: "verdict pending", text: "…" }),
        ),
        el("p", { className: "reason" }),
        el("p", { className: "snippet", text: hit.text }),
      );
    }),
  );
  if (!hits.length) list.append(el("li", { className: "muted", text: "No passages retrieved." }));
}

function showRelevance(judgements) {
  for (const judgement of judgements) {
    const item = $("hits").querySelector(`li[data-chunk-id="${Number(judgement.chunk_id)}"]`);
    if (!item) continue;
    const verdict = item.querySelector(".verdict");
    verdict.textContent = judgement.relevant ? "relevant" : "not relevant";
    verdict.className = `verdict ${judgement.relevant ? "relevant" : "irrelevant"}`;
    item.querySelector(".reason").textContent = judgement.reason || "";
  }
}

function showEvidence(run, evidence) {
  $("evidence").replaceChildren(
    ...evidence.map((item) => {
      run.evidence.set(item.id, item);
      return el(
        "li",
        { className: "evidence-item", dataset: { evidenceId: item.id } },
        el("span", { className: "marker", text: `[${item.id}]` }),
        el("q", { text: item.quote }),
        el("span", { className: "muted", text: ` — ${item.filename}` }),
        el("p", { className: "reason", text: item.reason || "" }),
      );
    }),
  );
  if (!evidence.length) {
    $("evidence").append(el("li", { className: "muted", text: "No evidence chosen." }));
  }
}

/** The analysis with each [n] marker as a button that opens what it cites. */
function showAnalysis(run, analysis) {
  const node = $("analysis");
  node.replaceChildren();
  let last = 0;
  for (const match of analysis.matchAll(/\[(\d+)\]/g)) {
    node.append(document.createTextNode(analysis.slice(last, match.index)));
    const item = run.evidence.get(Number(match[1]));
    if (item) {
      node.append(
        el("button", {
          type: "button",
          className: "marker-link",
          text: match[0],
          title: item.quote,
          onClick: () => openSource(run.collection, item.document_id, item.start, item.end, item.quote),
        }),
      );
    } else {
      node.append(document.createTextNode(match[0]));
    }
    last = match.index + match[0].length;
  }
  node.append(document.createTextNode(analysis.slice(last)));
}

function showAnswer(run, data) {
  $("answer").textContent = data.answer || "";
  showCitations(run, data.citations || []);
}

function showCitations(run, citations) {
  $("citations").replaceChildren(
    ...citations.map((c) =>
      el(
        "li",
        { className: "citation", dataset: { citationId: c.id } },
        el("button", {
          type: "button",
          className: "citation-link",
          text: `[${c.id}] ${c.filename}`,
          onClick: () => openSource(run.collection, c.document_id, c.start, c.end, c.quote),
        }),
        el("q", { text: c.quote }),
      ),
    ),
  );
  if (!citations.length) {
    $("citations").append(el("li", { className: "muted", text: "No citations." }));
  }
}

function finish(run, done) {
  run.ended = true;
  // A non-streamed (cached) body arrives as "done" alone: fill in what the events would have.
  if (!run.hits.size && Array.isArray(done.hits)) showHits(run, done.hits);
  if (done.relevance) showRelevance(done.relevance);
  if (!run.evidence.size && done.evidence?.length) showEvidence(run, done.evidence);
  if (!$("analysis").textContent && done.analysis) showAnalysis(run, done.analysis);
  showAnswer(run, done);

  $("answer-view").dataset.state = "done";
  $("run-step").textContent = "done";
  $("cached-badge").hidden = !done.cached;
  if (done.answer_source) {
    $("source-badge").textContent =
      done.answer_source === "extractive" ? "extractive answer" : "model answer";
    $("source-badge").hidden = false;
  }
  const cited = (done.citations || []).length > 0;
  const notice = $("no-support");
  if (done.degraded) {
    notice.textContent = `Degraded (${done.degraded}): ${done.answer || ""}`;
    notice.hidden = false;
  } else if (!cited && done.mode !== "closed_book") {
    notice.textContent =
      "The documents do not answer this question: no retrieved passage was cited.";
    notice.hidden = false;
  }
  const timings = $("timings");
  timings.replaceChildren(
    ...Object.entries(done.timings_ms || {}).map(([step, ms]) =>
      el("tr", {}, el("th", { text: step }), el("td", { text: `${Math.round(ms)} ms` })),
    ),
  );
  const usage = done.usage || {};
  $("run-meta").textContent = [
    done.model && `model ${done.model}`,
    done.mode && `mode ${done.mode}`,
    usage.prompt_tokens !== undefined &&
      `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`,
    done.index_version !== undefined && `index version ${done.index_version}`,
  ]
    .filter(Boolean)
    .join(" · ");
}
