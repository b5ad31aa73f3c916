import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeBackend } from "./fake-backend";
import { history, meter, NOW, signedOut, snapshot } from "./fixtures";
import { byTestId, click, go, mount, queryTestId, settle } from "./helpers";

afterEach(() => {
  vi.useRealTimers();
});

describe("shell", () => {
  it("shows Usage first, marks the active nav item, and switches on click", async () => {
    const { app } = await mount(new FakeBackend());
    expect(app.currentView()).toBe("usage");
    expect(byTestId("nav-usage").getAttribute("aria-current")).toBe("page");
    await go("builds");
    expect(app.currentView()).toBe("builds");
    expect(byTestId("nav-builds").getAttribute("aria-current")).toBe("page");
    expect(byTestId("nav-usage").hasAttribute("aria-current")).toBe(false);
    for (const v of ["usage", "builds", "notifications", "settings"]) expect(byTestId(`nav-${v}`).tagName).toBe("BUTTON");
  });

  it("switches view on the navigate event", async () => {
    const { app, backend } = await mount(new FakeBackend());
    backend.emit("navigate", "notifications");
    await settle();
    expect(app.currentView()).toBe("notifications");
    expect(byTestId("nav-notifications").getAttribute("aria-current")).toBe("page");
    backend.emit("navigate", "usage");
    await settle();
    expect(app.currentView()).toBe("usage");
    backend.emit("navigate", "nonsense");
    await settle();
    expect(app.currentView()).toBe("usage");
  });

  it("shows Sign-in without nav when signed out, whatever navigate asks", async () => {
    const { app, backend } = await mount(new FakeBackend({ snap: signedOut() }));
    expect(app.currentView()).toBe("sign_in");
    expect(byTestId("nav-usage").closest("nav")!.hidden).toBe(true);
    backend.emit("navigate", "builds");
    await settle();
    expect(app.currentView()).toBe("sign_in");
    expect(byTestId("offline-banner").hidden).toBe(true);
  });

  it("hides the offline banner while connected or polling", async () => {
    const { backend } = await mount(new FakeBackend());
    const banner = byTestId("offline-banner");
    expect(banner.hidden).toBe(true);
    expect(banner.getAttribute("role")).toBe("status");
    expect(banner.getAttribute("aria-live")).toBe("polite");
    backend.emit("snapshot", snapshot({ connection: "polling", now: NOW + 1 }));
    await settle();
    expect(banner.hidden).toBe(true);
  });

  it("shows the offline banner with the last sync time on every view", async () => {
    const { backend } = await mount(new FakeBackend({ snap: snapshot({ connection: "offline", connection_detail: "connection refused" }) }));
    const banner = byTestId("offline-banner");
    expect(banner.hidden).toBe(false);
    expect(banner.textContent).toMatch(/^Offline — showing cached data from \d{4}-\d\d-\d\d \d\d:\d\d \(2 min ago\)/);
    expect(banner.textContent).toContain("connection refused");
    for (const v of ["builds", "notifications", "settings", "usage"] as const) {
      await go(v);
      expect(byTestId("offline-banner").hidden).toBe(false);
    }
    // Views still work from the cache.
    expect(byTestId("meter-builds-text").textContent).toBe("42 / 100");
    backend.emit("snapshot", snapshot({ connection: "connected", now: NOW + 5 }));
    await settle();
    expect(banner.hidden).toBe(true);
  });

  it("leaves the banner's live region alone while its text stays the same", async () => {
    const { backend } = await mount(new FakeBackend({ snap: snapshot({ connection: "offline" }) }));
    const text = byTestId("offline-banner").firstChild;
    backend.emit("snapshot", snapshot({ connection: "offline", meters: [], now: NOW + 1 }));
    await settle();
    expect(byTestId("offline-banner").firstChild).toBe(text);
  });

  it("says never synced when offline with nothing cached", async () => {
    await mount(new FakeBackend({ snap: snapshot({ connection: "connecting", last_synced_at: null, synced_ago: null }) }));
    expect(byTestId("offline-banner").textContent).toBe("Offline — never synced");
  });

  it("shows an alert with Retry when the first snapshot fails, and recovers", async () => {
    const backend = new FakeBackend();
    backend.fail("snapshot", { code: "busy", message: "Another Quotabell is running.", field: null });
    const { app } = await mount(backend);
    const alert = document.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("Another Quotabell is running.");
    backend.heal("snapshot");
    await (alert.querySelector("button") as HTMLButtonElement).click();
    await settle();
    expect(document.querySelector('[role="alert"]')).toBeNull();
    expect(app.currentView()).toBe("usage");
  });

  it("shows an alert with Retry when it can't listen for events", async () => {
    const backend = new FakeBackend();
    backend.listenError = new TypeError("window.__TAURI_INTERNALS__ is undefined");
    const { app } = await mount(backend);
    const alert = document.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("Couldn't connect to Quotabell's engine");
    expect(backend.calls).toHaveLength(0);
    backend.listenError = null;
    await click(byTestId("retry", alert));
    expect(app.currentView()).toBe("usage");
    expect(backend.listenerCount("snapshot")).toBe(1);
  });

  it("updates meters live from the snapshot event, with no further command", async () => {
    const backend = new FakeBackend({ history: history() });
    await mount(backend);
    expect(byTestId("meter-builds-text").textContent).toBe("42 / 100");
    const before = backend.calls.length;
    backend.emit("snapshot", snapshot({ meters: [meter({ used: 130, percent: 130, level: "over", note: "over limit" })], now: NOW + 60 }));
    await settle();
    expect(byTestId("meter-builds-text").textContent).toBe("130 / 100");
    expect(byTestId("meter-builds-level").textContent).toBe("Over limit");
    expect(byTestId("meter-builds-note").textContent).toBe("over limit");
    expect(backend.calls.length).toBe(before);
  });

  it("never polls: no command runs on a timer", async () => {
    vi.useFakeTimers();
    const backend = new FakeBackend({ history: history() });
    await mount(backend);
    for (const v of ["builds", "notifications", "settings", "usage"] as const) {
      await go(v);
      const n = backend.calls.length;
      await vi.advanceTimersByTimeAsync(30 * 60 * 1000);
      await settle();
      expect(backend.calls.length, `calls on a timer in ${v}`).toBe(n);
    }
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ignores a snapshot older than the one shown", async () => {
    const { backend } = await mount(new FakeBackend());
    backend.emit("snapshot", snapshot({ meters: [meter({ used: 50, percent: 50 })], now: NOW + 10 }));
    backend.emit("snapshot", snapshot({ meters: [meter({ used: 45, percent: 45 })], now: NOW + 5 }));
    await settle();
    expect(byTestId("meter-builds-text").textContent).toBe("50 / 100");
  });

  it("goes to Sign-in when a snapshot says signed out, and back to Usage on sign-in", async () => {
    const { app, backend } = await mount(new FakeBackend());
    await go("builds");
    backend.emit("snapshot", { ...signedOut(), now: NOW + 1 });
    await settle();
    expect(app.currentView()).toBe("sign_in");
    expect(queryTestId("signin-server")).not.toBeNull();
    backend.emit("snapshot", snapshot({ now: NOW + 2 }));
    await settle();
    expect(app.currentView()).toBe("usage");
  });

  it("opens on the view named by the URL fragment, never on sign-in when signed in", async () => {
    expect((await mount(new FakeBackend(), "#builds")).app.currentView()).toBe("builds");
    expect((await mount(new FakeBackend(), "#sign_in")).app.currentView()).toBe("usage");
    expect((await mount(new FakeBackend(), "#nonsense")).app.currentView()).toBe("usage");
  });

  it("asks to sign in again when the server refused the stored token, naming the account", async () => {
    const { app, backend } = await mount(new FakeBackend());
    backend.emit("snapshot", snapshot({ connection: "signed_out", now: NOW + 1 }));
    await settle();
    expect(app.currentView()).toBe("sign_in");
    expect(byTestId("nav-usage").closest("nav")!.hidden).toBe(true);
    const note = byTestId("signin-refused");
    expect(note.textContent).toContain(snapshot().account!.email);
    expect(byTestId<HTMLInputElement>("signin-server").value).toBe(snapshot().account!.server);
    backend.emit("snapshot", snapshot({ connection: "connected", now: NOW + 2 }));
    await settle();
    expect(app.currentView()).toBe("usage");
  });

  it("unlistens on destroy", async () => {
    const { app, backend } = await mount(new FakeBackend());
    expect(backend.listenerCount("snapshot")).toBe(1);
    expect(backend.listenerCount("navigate")).toBe(1);
    app.destroy();
    expect(backend.listenerCount("snapshot")).toBe(0);
    expect(backend.listenerCount("navigate")).toBe(0);
  });
});
