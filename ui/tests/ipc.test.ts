import { describe, expect, it } from "vitest";
import { createApi, isIpcError, toIpcError } from "../src/ipc";
import { FakeBackend } from "./fake-backend";
import { settings } from "./fixtures";

describe("ipc", () => {
  it("sends each command by its Rust name with its argument key", async () => {
    const b = new FakeBackend();
    const api = createApi(b);
    await api.snapshot();
    await api.usageHistory();
    await api.builds({ search: "x", app: null, status: null, since: null, until: null, offset: 200, limit: 200 });
    await api.buildApps();
    await api.notifications({ offset: 0, limit: 50 });
    await api.settings();
    await api.saveSettings(settings());
    await api.pause("one_hour");
    await api.signOut();
    await api.signIn({ server: "http://127.0.0.1:8787", token: "t" });
    expect(b.calls.map((c) => [c.command, c.args ? Object.keys(c.args) : null])).toEqual([
      ["snapshot", null],
      ["usage_history", null],
      ["builds", ["query"]],
      ["build_apps", null],
      ["notifications", ["query"]],
      ["settings", null],
      ["save_settings", ["form"]],
      ["pause", ["choice"]],
      ["sign_out", null],
      ["sign_in", ["form"]],
    ]);
    expect(b.calls[2]!.args!.query).toMatchObject({ search: "x", offset: 200, limit: 200 });
  });

  it("passes IpcErrors through and turns anything else into one", async () => {
    const b = new FakeBackend();
    const api = createApi(b);
    b.fail("snapshot", { code: "busy", message: "another Quotabell runs", field: null });
    await expect(api.snapshot()).rejects.toEqual({ code: "busy", message: "another Quotabell runs", field: null });
    b.fail("snapshot", "command snapshot not found");
    await expect(api.snapshot()).rejects.toEqual({ code: "internal", message: "command snapshot not found", field: null });
    expect(toIpcError(new Error("boom"))).toEqual({ code: "internal", message: "boom", field: null });
    expect(toIpcError(42).code).toBe("internal");
    expect(isIpcError({ code: "nope", message: "x", field: null })).toBe(false);
  });

  it("delivers events to listeners until unlistened", async () => {
    const b = new FakeBackend();
    const api = createApi(b);
    const seen: string[] = [];
    const un = await api.onNavigate((v) => seen.push(v));
    b.emit("navigate", "builds");
    un();
    b.emit("navigate", "usage");
    expect(seen).toEqual(["builds"]);
  });
});
