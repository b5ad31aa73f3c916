// Settings: notification thresholds, quiet hours, toggles; Save (errors by field) and Sign out.
import type { IpcError } from "../bindings/IpcError";
import type { SettingsForm } from "../bindings/SettingsForm";
import { errorState } from "../components/error-state";
import { field, type Field } from "../components/field";
import { h, replace } from "../dom";
import { isHhMm, parseThresholds } from "../format";
import type { ViewContext, ViewInstance } from "./view";

export function settingsView(ctx: ViewContext): ViewInstance {
  const body = h("div", { class: "settings-body" });
  const el = h("section", { class: "settings", "aria-labelledby": "settings-title" }, h("h2", { id: "settings-title" }, "Settings"), body);
  let destroyed = false;

  async function load(): Promise<void> {
    replace(body, h("p", { class: "loading", role: "status" }, "Loading settings…"));
    try {
      const form = await ctx.api.call({ call: "settings" });
      if (!destroyed) replace(body, formEl(form), signOutEl());
    } catch (e) {
      if (!destroyed) replace(body, errorState(e as IpcError, () => void load(), "Couldn't load settings"), signOutEl());
    }
  }

  function formEl(initial: SettingsForm): HTMLElement {
    const thresholds = field(
      "Notify at (% of a limit)",
      h("input", { type: "text", inputmode: "numeric", value: initial.thresholds.join(", "), "data-testid": "settings-thresholds" }),
      { hint: "Comma-separated percentages from 1 to 100, e.g. 80, 100.", errorTestid: "settings-error-thresholds" },
    );
    const quietStart = field("Quiet hours from", h("input", { type: "time", value: initial.quiet_start ?? "", "data-testid": "settings-quiet-start" }), {
      errorTestid: "settings-error-quiet_start",
    });
    const quietEnd = field("Quiet hours until", h("input", { type: "time", value: initial.quiet_end ?? "", "data-testid": "settings-quiet-end" }), {
      errorTestid: "settings-error-quiet_end",
    });
    const check = (label: string, checked: boolean, testid: string, name: string) =>
      field(label, h("input", { type: "checkbox", checked, "data-testid": testid }), { inline: true, errorTestid: `settings-error-${name}` });
    const urgent = check("Urgent notifications come through quiet hours", initial.urgent_through_quiet, "settings-urgent", "urgent_through_quiet");
    const rejected = check("Notify when a build is rejected", initial.notify_rejected_builds, "settings-rejected", "notify_rejected_builds");
    const login = check("Start Quotabell at login", initial.start_at_login, "settings-login", "start_at_login");
    const fields: Record<string, Field<HTMLInputElement>> = {
      thresholds,
      quiet_start: quietStart,
      quiet_end: quietEnd,
      urgent_through_quiet: urgent,
      notify_rejected_builds: rejected,
      start_at_login: login,
    };
    const save = h("button", { type: "submit", class: "btn primary", "data-testid": "settings-save" }, "Save");
    const formError = h("div", { "data-testid": "settings-error-form" });
    const saved = h("p", { class: "saved", role: "status", "data-testid": "settings-saved" });

    const showError = (err: IpcError) => {
      const f = err.field ? fields[err.field] : undefined;
      if (f) {
        f.setError(err.message);
        f.control.focus();
      } else replace(formError, h("p", { class: "form-error", role: "alert" }, err.message));
    };

    async function onSubmit(e: Event): Promise<void> {
      e.preventDefault();
      if (save.disabled) return;
      for (const f of Object.values(fields)) f.setError(null);
      replace(formError);
      saved.textContent = "";
      const t = parseThresholds(thresholds.control.value);
      if (t === null || t.some((n) => n < 1 || n > 100))
        return showError({ code: "invalid", message: "Use whole percentages from 1 to 100, separated by commas.", field: "thresholds" });
      const qs = quietStart.control.value.trim();
      const qe = quietEnd.control.value.trim();
      if (qs && !isHhMm(qs)) return showError({ code: "invalid", message: "Use HH:MM.", field: "quiet_start" });
      if (qe && !isHhMm(qe)) return showError({ code: "invalid", message: "Use HH:MM.", field: "quiet_end" });
      if ((qs === "") !== (qe === ""))
        return showError({ code: "invalid", message: "Set both ends of quiet hours, or neither.", field: qs === "" ? "quiet_start" : "quiet_end" });
      const form: SettingsForm = {
        thresholds: t,
        quiet_start: qs || null,
        quiet_end: qe || null,
        urgent_through_quiet: urgent.control.checked,
        notify_rejected_builds: rejected.control.checked,
        start_at_login: login.control.checked,
      };
      save.disabled = true;
      try {
        const stored = await ctx.api.call({ call: "save_settings", args: form });
        thresholds.control.value = stored.thresholds.join(", ");
        quietStart.control.value = stored.quiet_start ?? "";
        quietEnd.control.value = stored.quiet_end ?? "";
        urgent.control.checked = stored.urgent_through_quiet;
        rejected.control.checked = stored.notify_rejected_builds;
        login.control.checked = stored.start_at_login;
        saved.textContent = "Saved.";
      } catch (err) {
        showError(err as IpcError);
      } finally {
        save.disabled = false;
      }
    }

    return h(
      "form",
      { class: "form settings-form", novalidate: true, on: { submit: (e) => void onSubmit(e) } },
      h("fieldset", null, h("legend", null, "Notifications"), thresholds.row, rejected.row),
      h("fieldset", null, h("legend", null, "Quiet hours"), h("div", { class: "row" }, quietStart.row, quietEnd.row), urgent.row),
      h("fieldset", null, h("legend", null, "System"), login.row),
      formError,
      h("div", { class: "actions" }, save, saved),
    );
  }

  function signOutEl(): HTMLElement {
    const box = h("div", { class: "signout" });
    const account = ctx.snapshot().account;
    const error = h("div");
    const ask = () =>
      replace(
        box,
        h("h3", null, "Account"),
        account ? h("p", { class: "muted" }, `Signed in as ${account.email} on ${account.server}.`) : null,
        h("button", { type: "button", class: "btn danger", "data-testid": "settings-signout", on: { click: confirm } }, "Sign out…"),
        error,
      );
    function confirm(): void {
      const yes = h("button", { type: "button", class: "btn danger", "data-testid": "settings-signout-confirm", on: { click: () => void doSignOut(yes) } }, "Sign out");
      const no = h("button", { type: "button", class: "btn", "data-testid": "settings-signout-cancel", on: { click: ask } }, "Cancel");
      replace(
        box,
        h("h3", null, "Account"),
        h("p", { role: "alert", "data-testid": "settings-signout-question" }, "Sign out? Quotabell stops watching your quotas until you sign in again."),
        h("div", { class: "actions" }, yes, no),
        error,
      );
      no.focus();
    }
    async function doSignOut(btn: HTMLButtonElement): Promise<void> {
      btn.disabled = true;
      replace(error);
      try {
        ctx.applySnapshot(await ctx.api.call({ call: "sign_out" }));
      } catch (e) {
        btn.disabled = false;
        replace(error, errorState(e as IpcError, () => void doSignOut(btn), "Couldn't sign out"));
      }
    }
    ask();
    return box;
  }

  void load();
  return {
    el,
    destroy() {
      destroyed = true;
    },
  };
}
