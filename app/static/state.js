// What the page knows, shared by its views, and the events that tell them it changed.

export const state = {
  role: null, // "admin" | "query"
  keysRequired: false,
  collections: [],
  selected: null, // collection name
  embedders: [],
  fileTypes: [], // [{extension, media_type}] from GET /v1/file-types
};

export const events = new EventTarget();

export function emit(name, detail) {
  events.dispatchEvent(new CustomEvent(name, { detail }));
}

export function on(name, handler) {
  events.addEventListener(name, (event) => handler(event.detail));
}

export function selectedCollection() {
  return state.collections.find((c) => c.name === state.selected) || null;
}

/** Documents of a collection not searchable yet: uploaded and waiting, or being read. */
export const pending = (c) => (c.documents_queued || 0) + (c.documents_processing || 0);

/** Every document of a collection, whatever its status. */
export const allDocuments = (c) => c.documents + pending(c) + (c.documents_failed || 0);

export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export const isAdmin = () => state.role === "admin";
