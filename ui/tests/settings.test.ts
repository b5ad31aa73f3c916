import { describe, expect, it } from "vitest";
import type { SettingsForm } from "../src/bindings/SettingsForm";
import { FakeBackend } from "./fake-backend";
import { settings } from "./fixtures";
import { byTestId, click, go, mount, queryTestId } from "./helpers";

async function openSettings(backend = new FakeBackend()) {
  const m = await mount(backend);
  await go("settings");
  return m;
}

const input = (id: string) => byTestId<HTMLInputElement>(id);

describe("settings", () => {
  it("shows the stored settings in labelled fields", async () => {
    await openSettings();
    expect(input("settings-thresholds").value).toBe("80, 100");
    expect(input("settings-quiet-start").value).toBe("22:00");
    expect(input("settings-quiet-end").value).toBe("07:00");
    expect(input("settings-urgent").checked).toBe(true);
    expect(input("settings-rejected").checked).toBe(true);
    expect(input("settings-login").checked).toBe(false);
    for (const id of ["settings-thresholds", "settings-quiet-start", "settings-quiet-end", "settings-urgent", "settings-rejected", "settings-login"])
      expect(document.querySelector(`label[for="${input(id).id}"]`)).not.toBeNull();
  });

  it("saves the form", async () => {
    const backend = new FakeBackend();
    await openSettings(backend);
    input("settings-thresholds").value = "50, 90 ,100";
    input("settings-quiet-start").value = "";
    input("settings-quiet-end").value = "";
    input("settings-login").checked = true;
    await click(byTestId("settings-save"));
    expect(backend.callsOf("save_settings")[0]!.args).toEqual({
      thresholds: [50, 90, 100],
      quiet_start: null,
      quiet_end: null,
      urgent_through_quiet: true,
      notify_rejected_builds: true,
      start_at_login: true,
      early_warning_days: 3,
      early_warning_margin_hours: 24,
      runaway_factor: 5,
      runaway_min_builds: 10,
      refill_notice: "after_top_threshold",
    } satisfies SettingsForm);
    expect(byTestId("settings-saved").textContent).toBe("Saved.");
    expect(input("settings-thresholds").value).toBe("50, 90, 100");
  });

  it("checks thresholds and quiet hours before sending", async () => {
    const backend = new FakeBackend();
    await openSettings(backend);
    input("settings-thresholds").value = "80, lots";
    await click(byTestId("settings-save"));
    expect(byTestId("settings-error-thresholds").hidden).toBe(false);
    expect(input("settings-thresholds").getAttribute("aria-invalid")).toBe("true");
    input("settings-thresholds").value = "80";
    input("settings-quiet-end").value = "";
    await click(byTestId("settings-save"));
    expect(byTestId("settings-error-thresholds").hidden).toBe(true);
    expect(byTestId("settings-error-quiet_end").textContent).toBe("Set both ends of quiet hours, or neither.");
    expect(backend.callsOf("save_settings")).toHaveLength(0);
  });

  it("turns foresight alerts off with an empty box and checks the numbers", async () => {
    const backend = new FakeBackend();
    await openSettings(backend);
    expect(input("settings-early-days").value).toBe("3");
    input("settings-early-days").value = "";
    input("settings-runaway-factor").value = "8x";
    await click(byTestId("settings-save"));
    expect(byTestId("settings-error-runaway_factor").textContent).toBe("Use a whole number, or leave it empty.");
    expect(backend.callsOf("save_settings")).toHaveLength(0);
    input("settings-runaway-factor").value = "8";
    (byTestId("settings-refill") as HTMLSelectElement).value = "always";
    await click(byTestId("settings-save"));
    expect(backend.callsOf("save_settings")[0]!.args).toMatchObject({
      early_warning_days: null,
      runaway_factor: 8,
      refill_notice: "always",
    });
  });

  it("puts the engine's field errors next to that field, others as an alert", async () => {
    const backend = new FakeBackend();
    await openSettings(backend);
    backend.fail("save_settings", { code: "invalid", message: "Quiet hours must differ.", field: "quiet_start" }, true);
    await click(byTestId("settings-save"));
    const slot = byTestId("settings-error-quiet_start");
    expect(slot.textContent).toBe("Quiet hours must differ.");
    expect(input("settings-quiet-start").closest(".field")!.contains(slot)).toBe(true);
    backend.fail("save_settings", { code: "storage", message: "Disk full.", field: null }, true);
    await click(byTestId("settings-save"));
    expect(byTestId("settings-error-quiet_start").hidden).toBe(true);
    expect(byTestId("settings-error-form").querySelector('[role="alert"]')!.textContent).toBe("Disk full.");
  });

  it("shows an alert with Retry when settings don't load", async () => {
    const backend = new FakeBackend({ settings: settings({ thresholds: [90] }) });
    backend.fail("settings", { code: "storage", message: "The cache could not be read.", field: null }, true);
    await openSettings(backend);
    const alert = document.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("The cache could not be read.");
    expect(queryTestId("settings-signout")).not.toBeNull(); // signing out still works
    await click(byTestId("retry", alert));
    expect(input("settings-thresholds").value).toBe("90");
  });

  it("signs out after a confirmation, and shows Sign-in", async () => {
    const backend = new FakeBackend();
    const { app } = await openSettings(backend);
    await click(byTestId("settings-signout"));
    expect(backend.callsOf("sign_out")).toHaveLength(0);
    await click(byTestId("settings-signout-cancel"));
    expect(queryTestId("settings-signout-confirm")).toBeNull();
    await click(byTestId("settings-signout"));
    await click(byTestId("settings-signout-confirm"));
    expect(backend.callsOf("sign_out")).toHaveLength(1);
    expect(app.currentView()).toBe("sign_in");
    expect(byTestId("offline-banner").hidden).toBe(true);
  });
});
