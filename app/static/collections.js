// The collection list (counts and embedder) and the create form (admin).

import { call } from "./api.js";
import { $, el, fillSelect, showError } from "./dom.js";
import { emit, isAdmin, state } from "./state.js";

let loads = 0; // calls started
let shown = 0; // the call whose answer the page shows

export async function loadCollections() {
  const load = ++loads;
  const body = await call("GET", "/v1/collections");
  // An earlier call answered after a later one: its list is older, so it must not replace it.
  if (load < shown) return;
  shown = load;
  const before = state.selected;
  state.collections = body.collections || [];
  if (!state.collections.some((c) => c.name === state.selected)) {
    state.selected = state.collections.length ? state.collections[0].name : null;
  }
  render();
  emit("collections", state.collections);
  if (state.selected !== before) emit("selected", state.selected);
}

export async function loadEmbedders() {
  try {
    const body = await call("GET", "/v1/embedders");
    state.embedders = body.embedders || [];
  } catch {
    state.embedders = [];
  }
  fillSelect(
    $("collection-embedder"),
    [["", "server default"], ...state.embedders.map((e) => [e.id, `${e.id} (${e.dim}d)`])],
  );
}

function render() {
  const list = $("collection-list");
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
            dataset: { collection: c.name },
            onClick: () => select(c.name),
          },
          el("span", { className: "name", text: c.name }),
          el("span", {
            className: "counts",
            text: `${c.documents} documents · ${c.chunks} chunks`,
          }),
          el("span", { className: "embedder", text: c.embedder }),
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

export function bindCollectionForm() {
  $("collection-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!isAdmin()) return;
    const name = $("collection-name").value.trim();
    const embedder = $("collection-embedder").value || undefined;
    showError($("collection-error"), null);
    try {
      await call("POST", "/admin/v1/collections", { name, embedder });
      $("collection-name").value = "";
      state.selected = name;
      await loadCollections();
      emit("selected", name);
    } catch (error) {
      showError($("collection-error"), error);
    }
  });
}
