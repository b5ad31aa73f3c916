// Typed wrappers over the window's IPC: ten commands and two events (see crates/core/src/ipc.rs).
// Everything goes through a `Transport`, so tests hand in a fake backend and the app hands in Tauri.
import { invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import type { BuildPage } from "./bindings/BuildPage";
import type { BuildQuery } from "./bindings/BuildQuery";
import type { ErrorCode } from "./bindings/ErrorCode";
import type { IpcError } from "./bindings/IpcError";
import type { NotificationPage } from "./bindings/NotificationPage";
import type { PageQuery } from "./bindings/PageQuery";
import type { PauseChoice } from "./bindings/PauseChoice";
import type { SettingsForm } from "./bindings/SettingsForm";
import type { SignInForm } from "./bindings/SignInForm";
import type { Snapshot } from "./bindings/Snapshot";
import type { UsageSeries } from "./bindings/UsageSeries";
import type { View } from "./bindings/View";

export type Unlisten = () => void;

/** The two things the window can do with its backend. */
export interface Transport {
  invoke(command: string, args?: Record<string, unknown>): Promise<unknown>;
  listen(event: string, handler: (payload: unknown) => void): Promise<Unlisten>;
}

/** The real one: Tauri's `invoke` and `listen` (withGlobalTauri is off, so imported). */
export function tauriTransport(): Transport {
  return {
    invoke: (command, args) => invoke(command, args),
    listen: (event, handler) => listen(event, (e) => handler(e.payload)),
  };
}

export interface Api {
  snapshot(): Promise<Snapshot>;
  usageHistory(): Promise<UsageSeries[]>;
  builds(query: BuildQuery): Promise<BuildPage>;
  buildApps(): Promise<string[]>;
  notifications(query: PageQuery): Promise<NotificationPage>;
  settings(): Promise<SettingsForm>;
  saveSettings(form: SettingsForm): Promise<SettingsForm>;
  signIn(form: SignInForm): Promise<Snapshot>;
  signOut(): Promise<Snapshot>;
  pause(choice: PauseChoice): Promise<Snapshot>;
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
  // Every rejection becomes an IpcError, so views branch on `code` and `field` only.
  const call = <T>(command: string, args?: Record<string, unknown>): Promise<T> =>
    t.invoke(command, args).then(
      (v) => v as T,
      (e: unknown) => Promise.reject(toIpcError(e)),
    );
  return {
    snapshot: () => call<Snapshot>("snapshot"),
    usageHistory: () => call<UsageSeries[]>("usage_history"),
    builds: (query) => call<BuildPage>("builds", { query }),
    buildApps: () => call<string[]>("build_apps"),
    notifications: (query) => call<NotificationPage>("notifications", { query }),
    settings: () => call<SettingsForm>("settings"),
    saveSettings: (form) => call<SettingsForm>("save_settings", { form }),
    signIn: (form) => call<Snapshot>("sign_in", { form }),
    signOut: () => call<Snapshot>("sign_out"),
    pause: (choice) => call<Snapshot>("pause", { choice }),
    onSnapshot: (handler) => t.listen("snapshot", (p) => handler(p as Snapshot)),
    onNavigate: (handler) => t.listen("navigate", (p) => handler(p as View)),
  };
}
