// The window's IPC, typed from one declaration: `Call` (crates/core/src/ipc.rs, exported by ts-rs)
// says what can be asked, `Replies` below says what each call answers, and one function sends
// any call through Tauri's one command (`call`). Two events come the other way.
// Everything goes through a `Transport`, so tests hand in a fake backend and the app hands in Tauri.
import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import type { BuildPage } from "./bindings/BuildPage";
import type { Call } from "./bindings/Call";
import type { ErrorCode } from "./bindings/ErrorCode";
import type { Finding } from "./bindings/Finding";
import type { IpcError } from "./bindings/IpcError";
import type { NotificationPage } from "./bindings/NotificationPage";
import type { SettingsForm } from "./bindings/SettingsForm";
import type { Snapshot } from "./bindings/Snapshot";
import type { UsageSeries } from "./bindings/UsageSeries";
import type { View } from "./bindings/View";

export type { Call };
export type Unlisten = () => void;

/** A call's tag: `"builds"`, `"sign_in"`, … */
export type CallName = Call["call"];

/** The call of one tag, with its `args` when it has any. */
export type CallOf<K extends CallName> = Extract<Call, { call: K }>;

/** Exactly one entry per call: a `Call` without a reply type here, or a reply for no call, fails the type check. */
type ReplyMap<T extends { [K in CallName]: unknown } & { [K in Exclude<keyof T, CallName>]: never }> = T;

/** What each call answers, by its tag (the companion's match in crates/core/src/companion.rs). */
export type Replies = ReplyMap<{
  snapshot: Snapshot;
  usage_history: UsageSeries[];
  builds: BuildPage;
  build_apps: string[];
  notifications: NotificationPage;
  settings: SettingsForm;
  save_settings: SettingsForm;
  sign_in: Snapshot;
  sign_out: Snapshot;
  pause: Snapshot;
  select_account: Snapshot;
  diagnose: Finding[];
}>;

/** The two things the window can do with its backend. */
export interface Transport {
  call(c: Call): Promise<unknown>;
  listen(event: string, handler: (payload: unknown) => void): Promise<Unlisten>;
}

/** The name of the shell's one command and its argument (src-tauri/src/commands.rs). */
export const COMMAND = "call";

/** The real one: Tauri's `invoke` and `listen` (withGlobalTauri is off, so imported). */
export function tauriTransport(): Transport {
  return {
    call: (c) => invoke(COMMAND, { call: c }),
    listen: (event, handler) => listen(event, (e) => handler(e.payload)),
  };
}

export interface Api {
  /** Sends one call; the reply's type follows from the call's tag. Rejects with an IpcError only. */
  call<C extends Call>(c: C): Promise<Replies[C["call"]]>;
  onSnapshot(handler: (s: Snapshot) => void): Promise<Unlisten>;
  onNavigate(handler: (v: View) => void): Promise<Unlisten>;
}

const CODES: readonly ErrorCode[] = [
  "invalid",
  "unauthorized",
  "unreachable",
  "keychain",
  "storage",
  "not_signed_in",
  "busy",
  "internal",
];

export function isIpcError(e: unknown): e is IpcError {
  if (typeof e !== "object" || e === null) return false;
  const o = e as Record<string, unknown>;
  return (
    typeof o.code === "string" &&
    (CODES as readonly string[]).includes(o.code) &&
    typeof o.message === "string" &&
    (o.field === null || o.field === undefined || typeof o.field === "string")
  );
}

/** Whatever a command rejected with, as an IpcError (Tauri itself rejects with strings). */
export function toIpcError(e: unknown): IpcError {
  if (isIpcError(e)) return { code: e.code, message: e.message, field: e.field ?? null };
  if (typeof e === "string") return { code: "internal", message: e, field: null };
  if (e instanceof Error) return { code: "internal", message: e.message, field: null };
  return { code: "internal", message: "Something went wrong.", field: null };
}

export function createApi(t: Transport): Api {
  return {
    // Every rejection becomes an IpcError, so views branch on `code` and `field` only.
    call: <C extends Call>(c: C) =>
      t.call(c).then(
        (v) => v as Replies[C["call"]],
        (e: unknown) => Promise.reject(toIpcError(e)),
      ),
    onSnapshot: (handler) => t.listen("snapshot", (p) => handler(p as Snapshot)),
    onNavigate: (handler) => t.listen("navigate", (p) => handler(p as View)),
  };
}
