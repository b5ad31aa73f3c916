import { describe, expect, expectTypeOf, it, vi } from "vitest";
import type { BuildPage } from "../src/bindings/BuildPage";
import type { Snapshot } from "../src/bindings/Snapshot";
import { COMMAND, createApi, isIpcError, tauriTransport, toIpcError, type Call, type CallName, type Replies } from "../src/ipc";
import { FakeBackend } from "./fake-backend";
import { settings } from "./fixtures";

const invoked = vi.hoisted(() => [] as { command: string; args: unknown }[]);
vi.mock("@tauri-apps/api/core", () => ({
  invoke: (command: string, args: unknown) => {
    invoked.push({ command, args });
    return Promise.resolve({ total: 0, offset: 0, rows: [] });
  },
}));

const query = { search: "x", app: null, status: null, since: null, until: null, offset: 200, limit: 200 };

describe("ipc", () => {
  it("sends every call as Rust's Call serializes: its tag, and its args when it has any", async () => {
    const b = new FakeBackend();
    const api = createApi(b);
    const calls: Call[] = [
      { call: "snapshot" },
      { call: "usage_history" },
      { call: "builds", args: query },
      { call: "build_apps" },
      { call: "notifications", args: { offset: 0, limit: 50, filter: "all" } },
      { call: "settings" },
      { call: "save_settings", args: settings() },
      { call: "pause", args: "one_hour" },
      { call: "sign_out", args: { account: 1 } },
      { call: "sign_in", args: { server: "http://127.0.0.1:8787", token: "t", name: null } },
      { call: "diagnose" },
    ];
    for (const c of calls) await api.call(c);
    expect(b.calls).toEqual(calls);
    expect(b.callsOf("builds")[0]!.args).toEqual(query);
  });

  it("types each reply by its call's tag, one reply type per call", async () => {
    const api = createApi(new FakeBackend());
    const page = api.call({ call: "builds", args: query });
    expectTypeOf(page).resolves.toEqualTypeOf<BuildPage>();
    expectTypeOf(api.call({ call: "pause", args: "resume" })).resolves.toEqualTypeOf<Snapshot>();
    expectTypeOf<keyof Replies>().toEqualTypeOf<CallName>();
    expect((await page).total).toBe(0);
  });

  it("goes through Tauri's one command, the call under its `call` argument", async () => {
    invoked.length = 0;
    const api = createApi(tauriTransport());
    const page = await api.call({ call: "builds", args: query });
    expect(page).toEqual({ total: 0, offset: 0, rows: [] });
    expect(COMMAND).toBe("call");
    expect(invoked).toEqual([{ command: "call", args: { call: { call: "builds", args: query } } }]);
  });

  it("passes IpcErrors through and turns anything else into one", async () => {
    const b = new FakeBackend();
    const api = createApi(b);
    b.fail("snapshot", { code: "busy", message: "another Quotabell runs", field: null });
    await expect(api.call({ call: "snapshot" })).rejects.toEqual({ code: "busy", message: "another Quotabell runs", field: null });
    b.fail("snapshot", "command call not found");
    await expect(api.call({ call: "snapshot" })).rejects.toEqual({ code: "internal", message: "command call not found", field: null });
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
