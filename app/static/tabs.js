// The content panel's views: the start card while there is no collection, else the tabs
// (Ask, Documents, Search model), of which one shows at a time.

import { $ } from "./dom.js";
import { state } from "./state.js";

let current = "ask";

export function bindTabs() {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
}

/** Show tab `name` (ask, documents, migration); with no collection, the start card instead. */
export function showTab(name = current) {
  current = name;
  const empty = !state.collections.length;
  $("start").hidden = !empty;
  $("tabs").hidden = empty;
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("[data-tab-panel]")) {
    const admin = panel.hasAttribute("data-admin");
    panel.hidden =
      empty || panel.dataset.tabPanel !== name || (admin && state.role !== "admin");
  }
}
