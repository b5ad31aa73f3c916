// A failed command, shown in place: the message as text, and a way to try again.
import type { IpcError } from "../bindings/IpcError";
import { h } from "../dom";

export function errorState(err: IpcError, retry: () => void, what = "Couldn't load this"): HTMLElement {
  const button = h("button", { type: "button", class: "btn", "data-testid": "retry", on: { click: () => retry() } }, "Retry");
  return h(
    "div",
    { class: "error-state", role: "alert", "data-testid": "error-state", "data-code": err.code },
    h("p", { class: "error-title" }, `${what}.`),
    h("p", { class: "error-message" }, err.message),
    button,
  );
}
