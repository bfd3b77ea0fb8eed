// Building the page without innerHTML: every string becomes a text node, so customer text, names
// and file names can never turn into markup. Attributes go through setAttribute / properties.
const SVG_NS = "http://www.w3.org/2000/svg";

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) { child.forEach((c) => append(el, c)); return; }
  el.append(child instanceof Node ? child : document.createTextNode(String(child)));
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

/** h("button", {class: "x", onclick: fn}, "text", child...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements (charts, icons). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const CHANNEL_ICONS = {
  sms: "M4 5h16v11H9l-5 4z",
  whatsapp: "M12 3a9 9 0 0 0-7.8 13.5L3 21l4.6-1.2A9 9 0 1 0 12 3z",
  email: "M3 6h18v12H3z M3 6l9 7 9-7",
  webchat: "M4 4h16v12H8l-4 4z M8 9h8 M8 12h5",
  api: "M8 7l-5 5 5 5 M16 7l5 5-5 5",
  system: "M12 3v4 M12 17v4 M3 12h4 M17 12h4 M12 8a4 4 0 1 0 0 8 4 4 0 0 0 0-8z",
};

const ICONS = {
  bell: "M6 16V11a6 6 0 0 1 12 0v5l2 2H4z M10 20a2 2 0 0 0 4 0",
  clip: "M16 7l-7.5 7.5a2 2 0 0 0 3 3L19 10a4 4 0 0 0-6-6l-8 8a6 6 0 0 0 9 9l6-6",
  theme: "M12 3a9 9 0 1 0 0 18z M12 3a9 9 0 0 1 0 18",
};

/** A line icon (decorative unless given a label). */
export function icon(name, label) {
  return s("svg", { class: "icon", viewBox: "0 0 24 24", "aria-hidden": label ? null : "true", role: label ? "img" : null,
    "aria-label": label || null },
  s("path", { d: ICONS[name], fill: "none", stroke: "currentColor", "stroke-width": 2, "stroke-linecap": "round", "stroke-linejoin": "round" }));
}

/** A small channel icon with an accessible label. */
export function channelIcon(channel) {
  const path = CHANNEL_ICONS[channel] || CHANNEL_ICONS.system;
  return s("svg", { class: `icon ch-${channel || "system"}`, viewBox: "0 0 24 24", role: "img",
    "aria-label": channel || "system" },
  s("title", {}, channel || "system"),
  s("path", { d: path, fill: "none", stroke: "currentColor", "stroke-width": 2, "stroke-linejoin": "round" }));
}

export function ago(iso) {
  if (!iso) return "";
  const secs = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (secs < 60) return `${Math.floor(secs)}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h`;
  return `${Math.floor(secs / 86400)}d`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** A transient message at the bottom of the page. */
export function toast(text, kind = "info") {
  const box = document.getElementById("toasts") || document.body.appendChild(h("div", { id: "toasts", role: "status" }));
  const item = h("div", { class: `toast ${kind}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}
