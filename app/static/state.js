// What the page knows, shared by its views, and the events that tell them it changed.

export const state = {
  role: null, // "admin" | "query"
  keysRequired: false,
  collections: [],
  selected: null, // collection name
  embedders: [],
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

export const isAdmin = () => state.role === "admin";
