// Sign-in: server URL and token. Errors go next to the field the engine names (IpcError.field).
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
  const formError = h("div", { class: "form-error", "data-testid": "signin-error-form", hidden: true });
  const submit = h("button", { type: "submit", class: "btn primary", "data-testid": "signin-submit" }, "Sign in");
  const fields = { server, token } as const;

  const form = h(
    "form",
    { class: "form signin-form", novalidate: true, "aria-labelledby": "signin-title", on: { submit: (e) => void onSubmit(e) } },
    server.row,
    token.row,
    formError,
    h("div", { class: "actions" }, submit),
  );

  function clearErrors(): void {
    server.setError(null);
    token.setError(null);
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
    const values = { server: server.control.value.trim(), token: token.control.value.trim() };
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
      submit.textContent = "Sign in";
      form.removeAttribute("aria-busy");
    }
  }

  const el = h(
    "section",
    { class: "signin" },
    h("h2", { id: "signin-title" }, "Sign in"),
    refused(ctx),
    h("p", { class: "muted" }, "Connect Quotabell to your build service to watch its quotas."),
    form,
  );
  const acct = ctx.snapshot()?.account;
  if (acct) server.control.value = acct.server;
  return { el };
}

/** When the server refused the stored token, say whose, so the user knows what to paste. */
function refused(ctx: ViewContext): HTMLElement | null {
  const s = ctx.snapshot();
  if (!s?.account || s.connection !== "signed_out") return null;
  return h("p", { class: "notice", role: "alert", "data-testid": "signin-refused" }, `The server refused the token of ${s.account.email}. Sign in again to resume.`);
}
