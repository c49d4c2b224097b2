// The first run: three steps (create a collection, add documents, ask) shown above the tabs
// until the first answer, each saying where it stands; and the start card while there is no
// collection at all. A person follows them without reading the README.

import { $ } from "./dom.js";
import { showTab } from "./tabs.js";
import { allDocuments, on, pending, plural, selectedCollection, state } from "./state.js";

let active = false; // the steps show (from a first run until the first answer)

/** Decide at load whether this is a first run: no collection, or an empty one chosen. */
export function startGuide() {
  const chosen = selectedCollection();
  active = !chosen || allDocuments(chosen) === 0;
  render();
}

export function bindGuide() {
  for (const step of document.querySelectorAll("#guide [data-goto]")) {
    step.addEventListener("click", () => go(step.dataset.goto));
  }
  on("collections", render);
  on("selected", render);
  on("answered", () => {
    active = false;
    render();
  });
}

function go(target) {
  if (target === "create") {
    const input = state.collections.length ? $("collection-name") : $("first-collection-name");
    if (!input.closest("[hidden]")) input.focus();
    return;
  }
  showTab(target);
  if (target === "ask") $("question").focus();
}

function render() {
  const guide = $("guide");
  guide.hidden = !active;
  // Who may not create or add is told so in the steps, not left to find a missing button.
  const admin = state.role === "admin";
  for (const node of document.querySelectorAll("[data-query-only]")) node.hidden = admin;
  if (!active) return;
  const chosen = selectedCollection();
  const ready = chosen ? chosen.documents : 0;
  const waiting = chosen ? pending(chosen) : 0;
  const failed = chosen ? chosen.documents_failed || 0 : 0;

  const steps = {
    create: chosen ? "done" : "current",
    add: !chosen ? "todo" : ready ? "done" : waiting ? "working" : "current",
    ask: ready ? "current" : "todo",
  };
  const notes = {
    create: chosen ? `“${chosen.name}”` : "a named set of documents",
    add: !chosen
      ? "files of your own"
      : ready
        ? plural(ready, "document") + " ready" + (waiting ? `, ${waiting} more coming` : "")
        : waiting
          ? `reading ${plural(waiting, "document")}…`
          : failed
            ? `${plural(failed, "file")} could not be read: add others`
            : admin
              ? "drop your files in"
              : "an admin key adds them",
    ask: ready ? "answers quote your documents" : "once a document is ready",
  };
  for (const item of guide.querySelectorAll("li[data-step]")) {
    const name = item.dataset.step;
    item.dataset.state = steps[name];
    const button = item.querySelector("button");
    button.disabled = steps[name] === "todo";
    if (steps[name] === "current") button.setAttribute("aria-current", "step");
    else button.removeAttribute("aria-current");
    item.querySelector(".step-note").textContent = notes[name];
  }
}
