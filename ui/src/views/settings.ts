// Settings: notification thresholds, quiet hours, foresight, toggles; Save (errors by field);
// the shown account's Sign out, Add another account, and Diagnostics.
import type { IpcError } from "../bindings/IpcError";
import type { RefillNotice } from "../bindings/RefillNotice";
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
    // Whole numbers; an empty box turns an optional alert off.
    const number = (label: string, value: number | null, testid: string, name: string, hint: string) =>
      field(label, h("input", { type: "text", inputmode: "numeric", value: value === null ? "" : String(value), "data-testid": testid }), {
        hint,
        errorTestid: `settings-error-${name}`,
      });
    const earlyDays = number("Warn before a limit, days ahead", initial.early_warning_days, "settings-early-days", "early_warning_days", "When the pace reaches a limit within this many days (1–30). Empty: no early warning.");
    const earlyMargin = number("…if at least this many hours before the period ends", initial.early_warning_margin_hours, "settings-early-margin", "early_warning_margin_hours", "0 to 240.");
    const runawayFactor = number("Alert at this many times the usual build rate", initial.runaway_factor, "settings-runaway-factor", "runaway_factor", "2 to 100. Empty: no alert for an unusual rate.");
    const runawayMin = number("…and at least this many builds in 15 minutes", initial.runaway_min_builds, "settings-runaway-min", "runaway_min_builds", "2 to 1000.");
    const refill = field(
      "Tell me when a quota refills",
      h(
        "select",
        { "data-testid": "settings-refill" },
        ...REFILL_CHOICES.map(([value, text]) => h("option", { value, selected: value === initial.refill_notice }, text)),
      ),
      { errorTestid: "settings-error-refill_notice" },
    );
    const fields: Record<string, Field<HTMLInputElement | HTMLSelectElement>> = {
      thresholds,
      quiet_start: quietStart,
      quiet_end: quietEnd,
      urgent_through_quiet: urgent,
      notify_rejected_builds: rejected,
      start_at_login: login,
      early_warning_days: earlyDays,
      early_warning_margin_hours: earlyMargin,
      runaway_factor: runawayFactor,
      runaway_min_builds: runawayMin,
      refill_notice: refill,
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
      const days = wholeOrEmpty(earlyDays.control.value);
      if (days === undefined) return showError({ code: "invalid", message: "Use a whole number of days, or leave it empty.", field: "early_warning_days" });
      const margin = wholeOrEmpty(earlyMargin.control.value);
      if (margin === undefined || margin === null) return showError({ code: "invalid", message: "Use a whole number of hours.", field: "early_warning_margin_hours" });
      const factor = wholeOrEmpty(runawayFactor.control.value);
      if (factor === undefined) return showError({ code: "invalid", message: "Use a whole number, or leave it empty.", field: "runaway_factor" });
      const minBuilds = wholeOrEmpty(runawayMin.control.value);
      if (minBuilds === undefined || minBuilds === null) return showError({ code: "invalid", message: "Use a whole number of builds.", field: "runaway_min_builds" });
      const form: SettingsForm = {
        thresholds: t,
        quiet_start: qs || null,
        quiet_end: qe || null,
        urgent_through_quiet: urgent.control.checked,
        notify_rejected_builds: rejected.control.checked,
        start_at_login: login.control.checked,
        early_warning_days: days,
        early_warning_margin_hours: margin,
        runaway_factor: factor,
        runaway_min_builds: minBuilds,
        refill_notice: refill.control.value as RefillNotice,
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
        earlyDays.control.value = stored.early_warning_days === null ? "" : String(stored.early_warning_days);
        earlyMargin.control.value = String(stored.early_warning_margin_hours);
        runawayFactor.control.value = stored.runaway_factor === null ? "" : String(stored.runaway_factor);
        runawayMin.control.value = String(stored.runaway_min_builds);
        refill.control.value = stored.refill_notice;
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
      h("fieldset", null, h("legend", null, "Foresight"), earlyDays.row, earlyMargin.row, runawayFactor.row, runawayMin.row, refill.row),
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
        account ? h("p", { class: "muted" }, `Signed in as ${account.email} on ${account.server}${account.name !== account.email ? ` (“${account.name}”)` : ""}.`) : null,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "btn danger", "data-testid": "settings-signout", on: { click: confirm } }, ctx.snapshot().accounts.length > 1 ? `Sign out of ${account?.name ?? "this account"}…` : "Sign out…"),
          h("button", { type: "button", class: "btn", "data-testid": "settings-add-account", on: { click: () => ctx.navigate("sign_in") } }, "Add another account…"),
          h("button", { type: "button", class: "btn", "data-testid": "settings-diagnostics", on: { click: () => ctx.navigate("diagnostics") } }, "Diagnostics…"),
        ),
        error,
      );
    function confirm(): void {
      const yes = h("button", { type: "button", class: "btn danger", "data-testid": "settings-signout-confirm", on: { click: () => void doSignOut(yes) } }, "Sign out");
      const no = h("button", { type: "button", class: "btn", "data-testid": "settings-signout-cancel", on: { click: ask } }, "Cancel");
      replace(
        box,
        h("h3", null, "Account"),
        h(
          "p",
          { role: "alert", "data-testid": "settings-signout-question" },
          ctx.snapshot().accounts.length > 1
            ? `Sign out of ${account?.name ?? "this account"}? Its token and cached history are deleted; your other accounts stay.`
            : "Sign out? Quotabell stops watching your quotas until you sign in again.",
        ),
        h("div", { class: "actions" }, yes, no),
        error,
      );
      no.focus();
    }
    async function doSignOut(btn: HTMLButtonElement): Promise<void> {
      btn.disabled = true;
      replace(error);
      try {
        if (!account) return;
        ctx.applySnapshot(await ctx.api.call({ call: "sign_out", args: { account: account.id } }));
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

// The refill notice's choices, in the words of the form (each of `RefillNotice` once: the
// compiler checks the record).
const REFILL_TEXT: Record<RefillNotice, string> = {
  never: "Never",
  after_top_threshold: "After a period that reached my top threshold",
  always: "At every new period",
};
const REFILL_CHOICES = Object.entries(REFILL_TEXT) as [RefillNotice, string][];

/** A whole number from the box; `null` when empty; `undefined` when not a whole number. */
function wholeOrEmpty(text: string): number | null | undefined {
  const t = text.trim();
  if (t === "") return null;
  return /^\d{1,5}$/.test(t) ? Number(t) : undefined;
}
