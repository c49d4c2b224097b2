// Ask: the question form and the answer, built up live from the query's server-sent events.

import { call, streamQuery } from "./api.js";
import { $, clear, el, fillSelect, showError } from "./dom.js";
import { select } from "./collections.js";
import { openSource } from "./source.js";
import { showTab } from "./tabs.js";
import { emit, isAdmin, on, pending, plural, selectedCollection, state } from "./state.js";

const STEP_LABELS = {
  retrieval: "found excerpts; judging which help…",
  relevance: "judged the excerpts; picking quotes…",
  evidence: "picked quotes; reasoning…",
  answer_delta: "writing the answer…",
  answer_reset: "writing the answer again…",
  analysis: "reasoned; checking the answer…",
  answer: "answered",
};
const MODE_NAMES = {
  steps: "step by step",
  single_pass: "all steps at once",
  one_call: "one quick call",
  closed_book: "without documents",
};
const TIMING_NAMES = {
  retrieve: "searching",
  relevance: "judging excerpts",
  evidence: "picking quotes",
  analysis: "reasoning and answering",
  generator: "of which the model",
  cache: "reading the saved answer",
  total: "in all",
};

export function bindAsk() {
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  $("ask-collection").addEventListener("change", (event) => select(event.target.value));
  $("new-conversation").addEventListener("click", () => {
    conversation.turns = [];
    showConversation();
    $("question").focus();
  });
  on("collections", (collections) => {
    fillSelect(
      $("ask-collection"),
      collections.map((c) => [c.name, c.name]),
      state.selected,
    );
    updateAskButton();
    showIngestStatus();
  });
  on("selected", (name) => {
    if (name) $("ask-collection").value = name;
    if (name !== conversation.collection) {
      // Another collection: another conversation.
      conversation.collection = name;
      conversation.turns = [];
      showConversation();
    }
    $("question").placeholder = name
      ? `Ask a question about the documents in “${name}”`
      : "Ask a question about your documents";
    updateAskButton();
    showIngestStatus();
  });
}

/**
 * Beside the question box: whether the chosen collection can answer yet. Documents still being
 * ingested are not searched, so a person asking now learns that answers use only those ready.
 * (The counts come from GET /v1/collections, read again every few seconds while any wait.)
 */
function showIngestStatus() {
  const node = $("ingest-status");
  const chosen = selectedCollection();
  if (!chosen) {
    node.replaceChildren();
    node.dataset.state = "";
    return;
  }
  const ready = chosen.documents;
  const waiting = pending(chosen);
  const failed = chosen.documents_failed || 0;
  const goToDocuments = (text) =>
    el("button", { type: "button", className: "link", text, onClick: () => showTab("documents") });
  let stateName;
  const parts = [];
  if (waiting) {
    stateName = "ingesting";
    const reading = chosen.documents_processing || 0;
    const queued = chosen.documents_queued || 0;
    const doing = [reading && `${reading} being read`, queued && `${queued} waiting`]
      .filter(Boolean)
      .join(", ");
    parts.push(
      el("span", { className: "spinner", "aria-hidden": "true" }),
      el("strong", { text: `Still adding ${plural(waiting, "document")}` }),
      ` (${doing}). `,
      ready
        ? `Answers use the ${plural(ready, "document")} ready so far.`
        : "No document is ready to search yet.",
    );
  } else if (ready) {
    stateName = "ready";
    parts.push(`${plural(ready, "document")} ready to search.`);
  } else if (failed) {
    stateName = "failed";
    parts.push(`No document of “${chosen.name}” could be read. `, goToDocuments("See why"));
  } else {
    stateName = "empty";
    parts.push(
      `“${chosen.name}” has no documents yet. `,
      isAdmin() ? goToDocuments("Add documents") : "Someone with an admin key adds them.",
    );
  }
  if (failed && stateName !== "failed") {
    parts.push(" ", goToDocuments(`${plural(failed, "file")} could not be read`));
  }
  node.replaceChildren(...parts);
  node.dataset.state = stateName;
}

let asking = false; // a question's stream is open

/** Ask is enabled once there is a collection to ask, and not while an answer streams in. */
function updateAskButton() {
  $("ask-button").disabled = asking || !$("ask-collection").value;
}

const NO_ADAPTER = "none: the base model";

export async function loadAdapters() {
  try {
    const body = await call("GET", "/v1/adapters");
    const adapters = body.adapters || [];
    fillSelect($("ask-adapter"), [
      ["", NO_ADAPTER],
      ...adapters.map((a) => [a.name, `${a.name} (for ${a.base_model})`]),
    ]);
  } catch {
    fillSelect($("ask-adapter"), [["", NO_ADAPTER]]);
  }
}

/** What one run has seen so far: hits by chunk id, evidence by id. */
class Run {
  constructor(collection) {
    this.collection = collection;
    this.hits = new Map();
    this.evidence = new Map();
    this.ended = false;
    this.written = ""; // the answer as the model writes it, until the checked one arrives
  }
}

/**
 * The conversation so far in the chosen collection: each answered question with its answer. A
 * new question is sent with them as `history`, so a follow-up ("when was it built?") is read
 * with them in mind; the service says what it searched for (`standalone_question`).
 */
const MAX_TURNS = 20;
const conversation = { collection: null, turns: [] };

function showConversation() {
  $("conversation").hidden = conversation.turns.length === 0;
  $("conversation-turns").replaceChildren(
    ...conversation.turns.map((turn) =>
      el(
        "li",
        {},
        el("p", { className: "turn-question", text: turn.question }),
        el("p", { className: "turn-answer", text: turn.answer }),
      ),
    ),
  );
}

function remember(question, done) {
  if (done.degraded) return;
  conversation.turns.push({ question, answer: done.answer || "" });
  conversation.turns = conversation.turns.slice(-MAX_TURNS);
  showConversation();
}

async function ask() {
  const collection = $("ask-collection").value;
  const question = $("question").value.trim();
  if (!collection || !question) return;
  const body = { collection, question };
  const mode = $("ask-mode").value;
  const adapter = $("ask-adapter").value;
  const retrieval = $("ask-retrieval").value;
  const topK = Number.parseInt($("ask-top-k").value, 10);
  if (mode) body.mode = mode;
  if (adapter) body.adapter = adapter;
  if (retrieval) body.retrieval = retrieval;
  if (Number.isFinite(topK)) body.top_k = topK;
  if (conversation.collection !== collection) {
    conversation.collection = collection;
    conversation.turns = [];
    showConversation();
  }
  if (conversation.turns.length) body.history = conversation.turns;

  resetView();
  const run = new Run(collection);
  run.question = question;
  asking = true;
  updateAskButton();
  $("answer-view").dataset.state = "running";
  $("run-step").textContent = "searching the documents…";
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
  delete $("answer").dataset.writing;
  for (const id of ["citations", "evidence", "hits", "timings"]) clear($(id));
  for (const id of ["cached-badge", "source-badge", "no-support", "standalone"]) {
    $(id).hidden = true;
  }
  showError($("ask-error"), null);
}

function handle(run, name, data) {
  if (name in STEP_LABELS) $("run-step").textContent = STEP_LABELS[name];
  if (name === "retrieval") showHits(run, data.hits || []);
  else if (name === "relevance") showRelevance(data.relevance || []);
  else if (name === "evidence") showEvidence(run, data.evidence || []);
  else if (name === "answer_delta") showWriting(run, run.written + (data.text || ""));
  else if (name === "answer_reset") showWriting(run, "");
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
      // The raw score (a fused rank for hybrid search) means nothing to a reader: the list is
      // in order, best match first, and the number stays in the tooltip for whoever wants it.
      return el(
        "li",
        {
          className: "hit",
          dataset: { chunkId: hit.chunk_id },
          title: `search score ${Number(hit.score).toFixed(3)}`,
        },
        el(
          "div",
          { className: "hit-head" },
          el("button", {
            type: "button",
            className: "link",
            text: hit.filename,
            title: "Open the document at this excerpt",
            onClick: () => openSource(run.collection, hit.document_id, hit.start, hit.end),
          }),
          el("span", { className: "verdict pending", text: "…" }),
        ),
        el("p", { className: "reason" }),
        el("p", { className: "snippet", text: hit.text }),
      );
    }),
  );
  if (!hits.length) list.append(el("li", { className: "muted", text: "No excerpts found." }));
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
    $("evidence").append(el("li", { className: "muted", text: "No quotes chosen." }));
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

/**
 * The answer as the model writes it (`answer_delta` events; `answer_reset` starts it over). The
 * `answer` event then replaces it with the answer as checked against the documents, which may
 * differ (a quote of the evidence, a decline), so the text shows as a draft until then.
 */
function showWriting(run, text) {
  run.written = text;
  $("answer").textContent = text;
  $("answer").dataset.writing = "true";
}

function showAnswer(run, data) {
  $("answer").textContent = data.answer || "";
  delete $("answer").dataset.writing;
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
    $("citations").append(el("li", { className: "muted", text: "No sources cited." }));
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
  if (done.standalone_question) {
    $("standalone").textContent = `Read as: “${done.standalone_question}”`;
    $("standalone").hidden = false;
  }
  if (done.answer_source) {
    $("source-badge").textContent =
      done.answer_source === "extractive" ? "quoted from the documents" : "written by the model";
    $("source-badge").hidden = false;
  }
  const cited = (done.citations || []).length > 0;
  const notice = $("no-support");
  if (done.degraded) {
    notice.textContent = `Degraded (${done.degraded}): ${done.answer || ""}`;
    notice.hidden = false;
  } else if (!cited && done.mode !== "closed_book") {
    notice.textContent =
      "The documents do not answer this question: no excerpt found supports an answer.";
    notice.hidden = false;
  }
  const timings = $("timings");
  timings.replaceChildren(
    ...Object.entries(done.timings_ms || {}).map(([step, ms]) =>
      el(
        "tr",
        {},
        el("th", { text: TIMING_NAMES[step] || step }),
        el("td", { text: `${Math.round(ms)} ms` }),
      ),
    ),
  );
  const usage = done.usage || {};
  $("run-meta").textContent = [
    done.model && `model ${done.model}`,
    done.mode && (MODE_NAMES[done.mode] || done.mode),
    usage.prompt_tokens !== undefined &&
      `${usage.prompt_tokens} tokens read, ${usage.completion_tokens} written`,
    done.index_version !== undefined && `collection version ${done.index_version}`,
  ]
    .filter(Boolean)
    .join(" · ");
  if (run.collection === conversation.collection) remember(run.question, done);
  emit("answered", run.collection);
}
