// DOM helpers. Everything the inbox shows is built as elements and text nodes: no HTML string
// is ever parsed (no innerHTML), so no text from a message, a name or a setting can run.

// h("button", {class: "x", onclick: fn, aria: {label: "Close"}, data: {id: 1}}, "text", child)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
      else if (key === "text") el.textContent = String(value);
      else if (key === "aria") for (const [k, v] of Object.entries(value)) { if (v !== undefined && v !== null) el.setAttribute("aria-" + k, String(v)); }
      else if (key === "data") for (const [k, v] of Object.entries(value)) { if (v !== undefined && v !== null) el.dataset[k] = String(v); }
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "value") el.value = value;
      else if (key === "checked" || key === "disabled" || key === "hidden" || key === "selected" || key === "required" || key === "multiple") el[key] = !!value;
      else if (key === "style") throw new Error("inline styles are not allowed (CSP): use a class");
      else if (key === "html") throw new Error("HTML strings are not allowed: build elements");
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export function icon(name) {
  // Small inline SVG icons, built as elements (no markup strings).
  const paths = {
    inbox: "M3 13h5l2 3h4l2-3h5M5 5h14l2 8v6H3v-6z",
    settings: "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM19 12l2-1-2-4-2 1-2-2 1-2-4-2-1 2h-2L9 2 5 4l1 2-2 2-2-1-2 4 2 1v2l-2 1 2 4 2-1 2 2-1 2 4 2 1-2h2l1 2 4-2-1-2 2-2 2 1 2-4-2-1z",
    send: "M3 20l18-8L3 4v6l12 2-12 2z",
    close: "M6 6l12 12M18 6L6 18",
    check: "M5 12l5 5L20 7",
    trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
    bell: "M6 17V11a6 6 0 0 1 12 0v6l2 2H4zM10 21h4",
    search: "M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14zM16 16l5 5",
    user: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21a8 8 0 0 1 16 0",
    shield: "M12 3l8 3v6c0 5-4 8-8 9-4-1-8-4-8-9V6z",
    back: "M15 5l-7 7 7 7",
  };
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", paths[name] || "");
  svg.appendChild(path);
  return svg;
}

// Polite announcement for screen readers (new messages, saved settings, errors).
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A new text node on the next frame, so repeating the same message is announced again.
  requestAnimationFrame(() => { region.textContent = text; });
}

// A modal dialog (<dialog> with showModal: focus trapped, Escape closes, focus returns).
// `build(close)` returns the dialog's content; resolves with the value passed to close().
export function modal(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = "dlg-" + Math.random().toString(36).slice(2, 9);
    const dialog = h("dialog", { class: ["modal", wide && "modal-wide"], aria: { labelledby: titleId } });
    let done = false;
    const close = (value) => {
      if (done) return;
      done = true;
      dialog.close();
      dialog.remove();
      if (opener && opener.focus && document.contains(opener)) opener.focus();
      resolve(value);
    };
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(undefined); });
    dialog.append(
      h("header", { class: "modal-head" },
        h("h2", { id: titleId, text: title }),
        h("button", { type: "button", class: "icon-button", aria: { label: "Close" }, onclick: () => close(undefined) }, icon("close"))),
      h("div", { class: "modal-body" }, build(close)));
    document.body.appendChild(dialog);
    dialog.showModal();
    const first = dialog.querySelector("[autofocus], input, select, textarea, button.primary");
    if (first) first.focus();
  });
}

export function confirmDialog(title, text, { confirm = "Confirm", danger = false } = {}) {
  return modal(title, (close) => h("div", null,
    h("p", { text }),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"),
      h("button", { type: "button", class: danger ? "danger" : "primary", autofocus: true, onclick: () => close(true) }, confirm))));
}

// A form field: label + control (+ hint/error line tied with aria-describedby).
let fieldSeq = 0;
export function field(label, control, hint) {
  const id = control.id || "f" + (++fieldSeq);
  control.id = id;
  const hintId = id + "-hint";
  const hintEl = h("p", { class: "hint", id: hintId, text: hint || "" });
  control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control, hintEl);
}

// Marks a field invalid with its message (or clears it).
export function fieldError(control, message) {
  const hint = document.getElementById(control.id + "-hint");
  control.setAttribute("aria-invalid", message ? "true" : "false");
  if (hint) {
    hint.textContent = message || "";
    hint.classList.toggle("error", !!message);
  }
}

// Disables a button while `work` runs; shows its errors in `status` (an element with role=alert).
export async function busy(button, work) {
  const was = button.disabled;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = was;
    button.removeAttribute("aria-busy");
  }
}

export function avatar(name, hue, size) {
  return h("span", { class: ["avatar", size && "avatar-" + size], data: { hue: String(Math.floor(hue / 30) % 12) }, aria: { hidden: "true" } }, name);
}

export function copyButton(getText, label = "Copy") {
  const b = h("button", { type: "button", class: "secondary small" }, label);
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(getText());
      b.textContent = "Copied";
      announce("Copied to the clipboard");
    } catch (e) {
      b.textContent = "Select and copy";
    }
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}
