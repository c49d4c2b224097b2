// The collection list (live document counts) and creating a collection (admin).

import { call } from "./api.js";
import { $, el, fillSelect, showError, sleep } from "./dom.js";
import { showTab } from "./tabs.js";
import { emit, isAdmin, pending, plural, state } from "./state.js";

// How often the counts are read again: often while documents are being ingested, seldom
// otherwise (an upload from the command line shows up within IDLE_MS).
const BUSY_MS = 1500;
const IDLE_MS = 10000;

let loads = 0; // calls started
let shown = 0; // the call whose answer the page shows
let seen = null; // the last list shown, as JSON: an unchanged list is not shown again

export async function loadCollections() {
  const load = ++loads;
  const body = await call("GET", "/v1/collections");
  // An earlier call answered after a later one: its list is older, so it must not replace it.
  if (load < shown) return;
  shown = load;
  const collections = body.collections || [];
  const json = JSON.stringify(collections);
  if (json === seen) return;
  seen = json;
  const before = state.selected;
  state.collections = collections;
  if (!state.collections.some((c) => c.name === state.selected)) {
    state.selected = state.collections.length ? state.collections[0].name : null;
  }
  render();
  emit("collections", state.collections);
  if (state.selected !== before) emit("selected", state.selected);
}

let watching = false;

/** Read the counts again and again, for as long as the page is open (while it is visible). */
export async function watchCollections() {
  if (watching) return;
  watching = true;
  for (;;) {
    const busy = state.collections.some((c) => pending(c) > 0);
    await sleep(busy ? BUSY_MS : IDLE_MS);
    if (document.hidden) continue;
    try {
      await loadCollections();
    } catch {
      // The next round tries again; the page keeps what it last showed.
    }
  }
}

export async function loadEmbedders() {
  try {
    const body = await call("GET", "/v1/embedders");
    state.embedders = body.embedders || [];
  } catch {
    state.embedders = [];
  }
  fillSelect($("collection-embedder"), [
    ["", "the default"],
    ...state.embedders.map((e) => [e.id, e.id]),
  ]);
}

function render() {
  const list = $("collection-list");
  $("collection-form").hidden = !isAdmin() || !state.collections.length;
  if (!state.collections.length) {
    list.replaceChildren(el("li", { className: "muted", text: "No collections yet." }));
    return;
  }
  list.replaceChildren(
    ...state.collections.map((c) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            className: "collection",
            "aria-pressed": c.name === state.selected,
            title: `search model: ${c.embedder}`,
            dataset: { collection: c.name },
            onClick: () => select(c.name),
          },
          el("span", { className: "name", text: c.name }),
          el("span", {
            className: "counts",
            text: `${plural(c.documents, "document")} · ${plural(c.chunks, "excerpt")}`,
          }),
          pending(c) > 0
            ? el("span", { className: "adding", text: `adding ${pending(c)}…` })
            : null,
        ),
      ),
    ),
  );
}

export function select(name) {
  state.selected = name;
  render();
  emit("selected", name);
}

/** Create a collection from a form: `nameInput`'s value, shown errors in `errorNode`; then
 * select it and go to its Documents tab (what a new, empty collection needs next). */
async function create(nameInput, errorNode, embedder) {
  if (!isAdmin()) return;
  const name = nameInput.value.trim();
  showError(errorNode, null);
  try {
    await call("POST", "/admin/v1/collections", { name, embedder: embedder || undefined });
    nameInput.value = "";
    state.selected = name;
    await loadCollections();
    emit("selected", name);
    showTab("documents");
  } catch (error) {
    showError(errorNode, error);
  }
}

export function bindCollectionForm() {
  $("collection-form").addEventListener("submit", (event) => {
    event.preventDefault();
    create($("collection-name"), $("collection-error"), $("collection-embedder").value);
  });
  $("first-collection-form").addEventListener("submit", (event) => {
    event.preventDefault();
    create($("first-collection-name"), $("first-collection-error"));
  });
}
