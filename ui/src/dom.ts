// The only way this UI makes DOM: elements and text nodes. Strings are never parsed as markup.

export type Child = Node | string | number | null | undefined | false | Child[];

type Handler = (e: Event) => void;

export interface Attrs {
  class?: string;
  /** Event listeners, e.g. `{ click: fn }`. */
  on?: Record<string, Handler>;
  /** Set as properties rather than attributes. */
  value?: string;
  checked?: boolean;
  disabled?: boolean;
  hidden?: boolean;
  [attr: string]: unknown;
}

const PROPS = new Set(["value", "checked", "disabled", "hidden"]);

function setAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [name, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) {
      if (PROPS.has(name) && name !== "value") (el as unknown as Record<string, unknown>)[name] = false;
      continue;
    }
    if (name === "on") {
      for (const [type, fn] of Object.entries(v as Record<string, Handler>)) el.addEventListener(type, fn);
    } else if (PROPS.has(name)) {
      (el as unknown as Record<string, unknown>)[name] = v;
    } else if (/^on/i.test(name) || name.toLowerCase() === "style") {
      // Inline handlers and style attributes are what the CSP forbids; use `on` and classes.
      throw new Error(`h(): attribute ${name} is not allowed`);
    } else {
      el.setAttribute(name, v === true ? "" : String(v));
    }
  }
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, ...c);
    else if (typeof c === "string" || typeof c === "number") parent.appendChild(document.createTextNode(String(c)));
    else parent.appendChild(c);
  }
}

/** `h("p", { class: "x" }, "text", child)`: strings become text nodes, always. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, ...children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag) as SVGElementTagNameMap[K];
  setAttrs(el, attrs);
  append(el, ...children);
  return el;
}

/** Replace all children of `el`. */
export function replace(el: Node, ...children: Child[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, ...children);
}

let ids = 0;
/** A document-unique id for label/aria wiring. */
export function uid(prefix: string): string {
  ids += 1;
  return `${prefix}-${ids}`;
}
