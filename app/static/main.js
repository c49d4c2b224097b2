// The page's entry: find out who is calling (asking for a key when the deployment needs one),
// show only what that key may do, then load collections, open the view a person needs first
// (the start card, a new collection's Documents tab, or Ask) and keep the counts live.

import { ApiError, call, forgetKey, storeKey, storedKey } from "./api.js";
import { $, showError } from "./dom.js";
import { bindAsk, loadAdapters } from "./ask.js";
import {
  bindCollectionForm,
  loadCollections,
  loadEmbedders,
  watchCollections,
} from "./collections.js";
import { bindDocuments, loadFileTypes } from "./documents.js";
import { bindGuide, startGuide } from "./guide.js";
import { bindMigration } from "./migration.js";
import { bindSource } from "./source.js";
import { allDocuments, on, selectedCollection, state } from "./state.js";
import { bindTabs, showTab } from "./tabs.js";

/** Admin-only controls exist in the page but stay hidden for a query key (the server still
 * refuses their calls with 403 whatever the page shows). */
function applyRole() {
  const admin = state.role === "admin";
  for (const node of document.querySelectorAll("[data-admin]")) {
    if (!node.hasAttribute("data-tab-panel")) node.hidden = !admin;
  }
  for (const node of document.querySelectorAll("[data-query-only]")) node.hidden = admin;
  document.body.dataset.role = state.role || "";
  const identity = $("identity");
  identity.textContent = state.keysRequired
    ? `${state.role} key`
    : "no keys configured (open, local)";
  $("forget-key").hidden = !state.keysRequired;
}

async function identify() {
  try {
    const me = await call("GET", "/v1/me");
    state.role = me.role;
    state.keysRequired = me.keys_required;
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
}

function askForKey(message) {
  $("workspace").hidden = true;
  $("key-panel").hidden = false;
  showError($("key-error"), message || null);
  $("key-input").focus();
}

/** The first view: an empty collection's next step is adding documents (for whoever may). */
function firstTab() {
  const chosen = selectedCollection();
  return chosen && allDocuments(chosen) === 0 && state.role === "admin" ? "documents" : "ask";
}

async function enter() {
  applyRole();
  $("key-panel").hidden = true;
  $("workspace").hidden = false;
  await Promise.all([loadEmbedders(), loadAdapters(), loadFileTypes()]);
  await loadCollections();
  showTab(firstTab());
  startGuide();
  watchCollections();
}

async function start() {
  const notice = $("notice");
  try {
    if (await identify()) {
      await enter();
    } else {
      const hadKey = Boolean(storedKey());
      forgetKey();
      askForKey(hadKey ? "The stored key is invalid or revoked." : null);
    }
  } catch (error) {
    showError(notice, error);
  }
}

function bindKeyForm() {
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    storeKey(key);
    try {
      if (await identify()) {
        $("key-input").value = "";
        await enter();
      } else {
        forgetKey();
        askForKey({ describe: () => "unauthorized: the API key is invalid or revoked" });
      }
    } catch (error) {
      forgetKey();
      askForKey(error);
    }
  });
  $("forget-key").addEventListener("click", () => {
    forgetKey();
    state.role = null;
    location.reload();
  });
}

// The first collection appears (or the last one goes): switch between the start card and tabs.
let hadCollections = false;
on("collections", (collections) => {
  const has = collections.length > 0;
  if (has !== hadCollections) showTab();
  hadCollections = has;
});

bindTabs();
bindKeyForm();
bindCollectionForm();
bindDocuments();
bindAsk();
bindMigration();
bindSource();
bindGuide();
start();
