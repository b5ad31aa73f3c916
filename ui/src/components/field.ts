// A labelled form control with its own error slot, wired for screen readers.
import { h, uid } from "../dom";

export interface Field<E extends HTMLElement> {
  row: HTMLElement;
  control: E;
  error: HTMLElement;
  setError(message: string | null): void;
}

export function field<E extends HTMLInputElement | HTMLSelectElement>(
  label: string,
  control: E,
  opts: { errorTestid?: string; hint?: string; inline?: boolean } = {},
): Field<E> {
  const id = control.id || uid("f");
  control.id = id;
  const errId = `${id}-error`;
  const error = h("p", { class: "field-error", id: errId, "data-testid": opts.errorTestid, hidden: true });
  const hint = opts.hint ? h("p", { class: "field-hint", id: `${id}-hint` }, opts.hint) : null;
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  const labelEl = h("label", { for: id }, label);
  const row = opts.inline
    ? h("div", { class: "field field-inline" }, control, labelEl, hint, error)
    : h("div", { class: "field" }, labelEl, control, hint, error);
  const setError = (message: string | null) => {
    error.textContent = message ?? "";
    error.hidden = message === null;
    if (message === null) {
      control.removeAttribute("aria-invalid");
      control.setAttribute("aria-describedby", hint ? `${id}-hint` : "");
      if (!hint) control.removeAttribute("aria-describedby");
    } else {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", hint ? `${id}-hint ${errId}` : errId);
    }
  };
  return { row, control, error, setError };
}
