// The page's entry: find out who is calling (asking for a key when the deployment needs one),
// show only what that key may do, then load collections and wire the views.

import { ApiError, call, forgetKey, storeKey, storedKey } from "./api.js";
import { $, showError } from "./dom.js";
import { bindAsk, loadAdapters } from "./ask.js";
import { bindCollectionForm, loadCollections, loadEmbedders } from "./collections.js";
import { bindDocuments } from "./documents.js";
import { bindMigration } from "./migration.js";
import { bindSource } from "./source.js";
import { on, state } from "./state.js";

function bindTabs() {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
}

function showTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("[data-tab-panel]")) {
    const admin = panel.hasAttribute("data-admin");
    panel.hidden = panel.dataset.tabPanel !== name || (admin && state.role !== "admin");
  }
}

/** Admin-only controls exist in the page but stay hidden for a query key (the server still
 * refuses their calls with 403 whatever the page shows). */
function applyRole() {
  const admin = state.role === "admin";
  for (const node of document.querySelectorAll("[data-admin]")) {
    if (!node.hasAttribute("data-tab-panel")) node.hidden = !admin;
  }
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

async function enter() {
  applyRole();
  $("key-panel").hidden = true;
  $("workspace").hidden = false;
  showTab("ask");
  await Promise.all([loadEmbedders(), loadAdapters()]);
  await loadCollections();
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

on("selected", (name) => {
  $("no-collection").hidden = Boolean(name);
});
on("collections", (collections) => {
  $("no-collection").hidden = collections.length > 0;
});

bindTabs();
bindKeyForm();
bindCollectionForm();
bindDocuments();
bindAsk();
bindMigration();
bindSource();
start();
