// Several accounts: the switcher, the overview, signing one out, adding one; and Diagnostics.
import { describe, expect, it } from "vitest";
import type { Snapshot } from "../src/bindings/Snapshot";
import { FakeBackend } from "./fake-backend";
import { meter, signedOut, snapshot, summaryOf, XSS } from "./fixtures";
import { byTestId, click, go, mount, queryTestId, settle } from "./helpers";

/** Two accounts, "work" shown; each snapshot lists both. */
function twoAccounts(): { backend: FakeBackend; work: Snapshot; home: Snapshot } {
  const work = snapshot({ account: { id: 1, name: "work", email: "dev@work.example", server: "https://work.example", plan: "Team", hard_limit: true } });
  const home = snapshot({
    account: { id: 2, name: "home", email: "me@home.example", server: "http://127.0.0.1:8787", plan: "Free", hard_limit: true },
    meters: [meter({ used: 97, percent: 97, level: "warning" })],
    tray: { state: "warning", tooltip: "", lines: [], paused: false },
  });
  const accounts = [summaryOf(work), summaryOf(home)];
  work.accounts = accounts;
  home.accounts = accounts;
  const backend = new FakeBackend({ snap: work });
  backend.byAccount.set(1, work);
  backend.byAccount.set(2, home);
  return { backend, work, home };
}

describe("several accounts", () => {
  it("switches the shown account with the switcher, and the views follow", async () => {
    const { backend } = twoAccounts();
    await mount(backend);
    const switcher = byTestId<HTMLSelectElement>("account-switcher");
    expect(switcher.hidden).toBe(false);
    expect([...switcher.options].map((o) => o.textContent)).toEqual(["work", "home", "All accounts"]);
    expect(switcher.value).toBe("1");
    expect(byTestId("meter-builds-text").textContent).toBe("42 / 100");
    switcher.value = "2";
    switcher.dispatchEvent(new Event("change"));
    await settle();
    expect(backend.callsOf("select_account").map((c) => c.args)).toEqual([{ account: 2 }]);
    expect(byTestId("meter-builds-text").textContent).toBe("97 / 100");
    expect(switcher.value).toBe("2");
  });

  it("shows every account in the overview, and one of them on Show usage", async () => {
    const { backend } = twoAccounts();
    const { app } = await mount(backend);
    const switcher = byTestId<HTMLSelectElement>("account-switcher");
    switcher.value = "all";
    switcher.dispatchEvent(new Event("change"));
    await settle();
    expect(app.currentView()).toBe("accounts");
    expect(byTestId("account-card-1").textContent).toContain("dev@work.example on https://work.example");
    expect(byTestId("account-state", byTestId("account-card-2")).textContent).toContain("Near a limit");
    expect(byTestId("account-meter-builds", byTestId("account-card-2")).textContent).toBe("Builds 97 / 100");
    await click(byTestId("account-show-2"));
    expect(app.currentView()).toBe("usage");
    expect(byTestId("meter-builds-text").textContent).toBe("97 / 100");
  });

  it("signs out only the shown account, saying the others stay", async () => {
    const { backend } = twoAccounts();
    await mount(backend);
    await go("settings");
    await click(byTestId("settings-signout"));
    expect(byTestId("settings-signout-question").textContent).toContain("Sign out of work?");
    expect(byTestId("settings-signout-question").textContent).toContain("your other accounts stay");
    await click(byTestId("settings-signout-confirm"));
    expect(backend.callsOf("sign_out").map((c) => c.args)).toEqual([{ account: 1 }]);
    // One account left: no switcher, its name in the bar.
    expect(byTestId<HTMLSelectElement>("account-switcher").hidden).toBe(true);
    expect(byTestId("account").textContent).toContain("home (me@home.example)");
  });

  it("adds an account from Settings, with a name", async () => {
    const { backend } = twoAccounts();
    const { app } = await mount(backend);
    await go("settings");
    await click(byTestId("settings-add-account"));
    expect(app.currentView()).toBe("sign_in");
    expect(document.getElementById("signin-title")!.textContent).toBe("Add an account");
    expect(byTestId<HTMLInputElement>("signin-server").value).toBe("");
    byTestId<HTMLInputElement>("signin-server").value = "https://staging.example";
    byTestId<HTMLInputElement>("signin-token").value = "qb_t";
    byTestId<HTMLInputElement>("signin-name").value = " staging ";
    await click(byTestId("signin-submit"));
    expect(backend.callsOf("sign_in")[0]!.args).toEqual({ server: "https://staging.example", token: "qb_t", name: "staging" });
    expect(app.currentView()).toBe("usage");
  });

  it("says when the server refused one account's token, and keeps the views", async () => {
    const { backend, work } = twoAccounts();
    const { app } = await mount(backend);
    backend.emit("snapshot", { ...work, connection: "signed_out", now: work.now + 1 });
    await settle();
    expect(app.currentView()).toBe("usage");
    expect(byTestId("offline-banner").textContent).toContain("The server refused the token of work");
  });

  it("has no switcher with one account", async () => {
    await mount(new FakeBackend());
    expect(byTestId<HTMLSelectElement>("account-switcher").hidden).toBe(true);
    expect(byTestId("account").hidden).toBe(false);
  });
});

describe("diagnostics", () => {
  it("lists each check with its verdict and fix, from Settings", async () => {
    const backend = new FakeBackend();
    backend.findings = [
      { check: "notifications", verdict: "ok", detail: "dunst 1.9 (actions, body-markup)", fix: null },
      { check: "tray", verdict: "fail", detail: "no StatusNotifierItem host: the tray icon cannot show", fix: "on GNOME install the AppIndicator extension" },
      { check: "account", verdict: "warn", detail: XSS, fix: XSS },
    ];
    const { app } = await mount(backend);
    await go("settings");
    await click(byTestId("settings-diagnostics"));
    expect(app.currentView()).toBe("diagnostics");
    expect(byTestId("diagnostics-summary").textContent).toBe("1 check fails.");
    const tray = byTestId("finding-tray");
    expect(tray.dataset.verdict).toBe("fail");
    expect(tray.textContent).toContain("Fix: on GNOME install the AppIndicator extension");
    // Server text stays text.
    expect(byTestId("finding-account").textContent).toContain(XSS);
    expect(document.querySelectorAll("img")).toHaveLength(0);
    backend.findings = [];
    await click(byTestId("diagnostics-run"));
    expect(backend.callsOf("diagnose")).toHaveLength(2);
    expect(byTestId("diagnostics-summary").textContent).toBe("Everything Quotabell needs is in place.");
  });

  it("opens signed out (the window opens here when there is no tray)", async () => {
    const backend = new FakeBackend({ snap: signedOut() });
    backend.findings = [{ check: "tray", verdict: "fail", detail: "no host", fix: "enable one" }];
    const { app } = await mount(backend, "#diagnostics");
    expect(app.currentView()).toBe("diagnostics");
    expect(queryTestId("finding-tray")).not.toBeNull();
  });
});
