// Sign-in: server URL, token and an optional name. Signed in already, it adds another account.
// Errors go next to the field the engine names (IpcError.field).
import type { IpcError } from "../bindings/IpcError";
import { field } from "../components/field";
import { h, replace } from "../dom";
import type { ViewContext, ViewInstance } from "./view";

export const DEFAULT_SERVER = "http://127.0.0.1:8787";

export function signInView(ctx: ViewContext): ViewInstance {
  const server = field(
    "Server URL",
    h("input", { type: "url", name: "server", placeholder: DEFAULT_SERVER, autocomplete: "url", spellcheck: "false", "data-testid": "signin-server" }),
    { errorTestid: "signin-error-server" },
  );
  const token = field(
    "Access token",
    h("input", { type: "password", name: "token", autocomplete: "off", spellcheck: "false", "data-testid": "signin-token" }),
    { errorTestid: "signin-error-token" },
  );
  const name = field(
    "Name (optional)",
    h("input", { type: "text", name: "name", autocomplete: "off", spellcheck: "false", placeholder: "e.g. work, staging", "data-testid": "signin-name" }),
    { hint: "What to call this account when you have several; its email by default.", errorTestid: "signin-error-name" },
  );
  const adding = ctx.snapshot()?.account != null && ctx.snapshot().connection !== "signed_out";
  const formError = h("div", { class: "form-error", "data-testid": "signin-error-form", hidden: true });
  const submit = h("button", { type: "submit", class: "btn primary", "data-testid": "signin-submit" }, adding ? "Add account" : "Sign in");
  const cancel = adding ? h("button", { type: "button", class: "btn", "data-testid": "signin-cancel", on: { click: () => ctx.navigate("usage") } }, "Cancel") : null;
  const fields = { server, token, name } as const;

  const form = h(
    "form",
    { class: "form signin-form", novalidate: true, "aria-labelledby": "signin-title", on: { submit: (e) => void onSubmit(e) } },
    server.row,
    token.row,
    name.row,
    formError,
    h("div", { class: "actions" }, submit, cancel),
  );

  function clearErrors(): void {
    server.setError(null);
    token.setError(null);
    name.setError(null);
    formError.hidden = true;
    formError.removeAttribute("role");
    replace(formError);
  }

  function showError(err: IpcError): void {
    const f = err.field && err.field in fields ? fields[err.field as keyof typeof fields] : null;
    if (f) {
      f.setError(err.message);
      f.control.focus();
    } else {
      formError.hidden = false;
      formError.setAttribute("role", "alert");
      replace(formError, err.message);
    }
  }

  async function onSubmit(e: Event): Promise<void> {
    e.preventDefault();
    if (submit.disabled) return;
    clearErrors();
    const label = name.control.value.trim();
    const values = { server: server.control.value.trim(), token: token.control.value.trim(), name: label === "" ? null : label };
    if (values.server === "") return showError({ code: "invalid", message: "Enter the server's URL, e.g. " + DEFAULT_SERVER, field: "server" });
    if (values.token === "") return showError({ code: "invalid", message: "Enter your access token.", field: "token" });
    submit.disabled = true;
    submit.textContent = "Signing in…";
    form.setAttribute("aria-busy", "true");
    try {
      const snap = await ctx.api.call({ call: "sign_in", args: values });
      token.control.value = "";
      ctx.applySnapshot(snap);
      ctx.navigate("usage");
    } catch (err) {
      showError(err as IpcError);
    } finally {
      submit.disabled = false;
      submit.textContent = adding ? "Add account" : "Sign in";
      form.removeAttribute("aria-busy");
    }
  }

  const el = h(
    "section",
    { class: "signin" },
    h("h2", { id: "signin-title" }, adding ? "Add an account" : "Sign in"),
    refused(ctx),
    h("p", { class: "muted" }, adding ? "Quotabell watches every account you add, each on its own connection." : "Connect Quotabell to your build service to watch its quotas."),
    form,
  );
  const acct = ctx.snapshot()?.account;
  if (acct && !adding) server.control.value = acct.server;
  return { el };
}

/** When the server refused the stored token, say whose, so the user knows what to paste. */
function refused(ctx: ViewContext): HTMLElement | null {
  const s = ctx.snapshot();
  if (!s?.account || s.connection !== "signed_out") return null;
  return h("p", { class: "notice", role: "alert", "data-testid": "signin-refused" }, `The server refused the token of ${s.account.name}. Sign in again to resume.`);
}
