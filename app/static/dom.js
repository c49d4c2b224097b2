// Building DOM nodes. Text goes in through textContent only: nothing from a document, a model
// or a server ever becomes markup.

/** el("li", {className: "x", text: "y", dataset: {id: "1"}, onClick: fn}, child, ...) */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "hidden" || key === "disabled") node[key] = Boolean(value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

export function showError(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.textContent = typeof error.describe === "function" ? error.describe() : String(error);
  node.hidden = false;
}

export function clear(node) {
  node.replaceChildren();
}

export function fillSelect(select, options, selected) {
  select.replaceChildren(
    ...options.map(([value, label]) => el("option", { value, text: label })),
  );
  if (selected !== undefined && options.some(([value]) => value === selected)) {
    select.value = selected;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
