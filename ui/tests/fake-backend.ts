// An in-memory engine behind the Transport interface: answers the ten commands, records every
// call, can fail or hold any command, and emits events like the Rust side does.
import type { BuildEntry } from "../src/bindings/BuildEntry";
import type { BuildQuery } from "../src/bindings/BuildQuery";
import type { IpcError } from "../src/bindings/IpcError";
import type { NotificationEntry } from "../src/bindings/NotificationEntry";
import type { PageQuery } from "../src/bindings/PageQuery";
import type { PauseChoice } from "../src/bindings/PauseChoice";
import type { SettingsForm } from "../src/bindings/SettingsForm";
import type { SignInForm } from "../src/bindings/SignInForm";
import type { Snapshot } from "../src/bindings/Snapshot";
import type { UsageSeries } from "../src/bindings/UsageSeries";
import type { Transport, Unlisten } from "../src/ipc";
import { NOW, settings as defaultSettings, snapshot as defaultSnapshot, signedOut } from "./fixtures";

/** Builds by index, newest first: an array, or made on demand (100,000 rows cost nothing). */
export type BuildSource = BuildEntry[] | { total: number; at(index: number): BuildEntry };

export interface Call {
  command: string;
  args?: Record<string, unknown>;
}

export class FakeBackend implements Transport {
  calls: Call[] = [];
  snap: Snapshot = defaultSnapshot();
  history: UsageSeries[] = [];
  builds: BuildSource = [];
  apps: string[] | null = null;
  notifications: NotificationEntry[] = [];
  settings: SettingsForm = defaultSettings();
  /** Validate sign-in: return an error to reject with, or null to accept. */
  signIn: (form: SignInForm) => IpcError | null = () => null;
  private failures = new Map<string, { err: unknown; once: boolean }>();
  private holds = new Map<string, Promise<void>>();
  private handlers = new Map<string, Set<(p: unknown) => void>>();

  constructor(init: Partial<Pick<FakeBackend, "snap" | "history" | "builds" | "apps" | "notifications" | "settings">> = {}) {
    Object.assign(this, init);
  }

  /** Make `command` reject with `err` (every time, or only the next time). */
  fail(command: string, err: unknown, once = false): void {
    this.failures.set(command, { err, once });
  }

  heal(command: string): void {
    this.failures.delete(command);
  }

  /** Hold `command`'s replies until the returned function is called. */
  hold(command: string): () => void {
    let release!: () => void;
    this.holds.set(command, new Promise<void>((r) => (release = r)));
    return () => {
      this.holds.delete(command);
      release();
    };
  }

  emit(event: string, payload: unknown): void {
    for (const h of this.handlers.get(event) ?? []) h(payload);
  }

  listenerCount(event: string): number {
    return this.handlers.get(event)?.size ?? 0;
  }

  callsOf(command: string): Call[] {
    return this.calls.filter((c) => c.command === command);
  }

  /** Make `listen` reject (as it does outside Tauri). */
  listenError: unknown = null;

  listen(event: string, handler: (payload: unknown) => void): Promise<Unlisten> {
    if (this.listenError !== null) return Promise.reject(this.listenError);
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
    return Promise.resolve(() => set!.delete(handler));
  }

  async invoke(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.calls.push({ command, args: args === undefined ? undefined : structuredClone(args) });
    const held = this.holds.get(command);
    if (held) await held;
    await Promise.resolve();
    const f = this.failures.get(command);
    if (f) {
      if (f.once) this.failures.delete(command);
      throw f.err;
    }
    return structuredClone(this.answer(command, args ?? {}));
  }

  private answer(command: string, args: Record<string, unknown>): unknown {
    switch (command) {
      case "snapshot":
        return this.snap;
      case "usage_history":
        return this.history;
      case "builds":
        return this.queryBuilds(args.query as BuildQuery);
      case "build_apps":
        return this.apps ?? (Array.isArray(this.builds) ? [...new Set(this.builds.map((b) => b.app))].sort() : ["app-0", "app-1", "app-2", "app-3", "app-4"]);
      case "notifications": {
        const q = args.query as PageQuery;
        return { total: this.notifications.length, offset: q.offset, rows: this.notifications.slice(q.offset, q.offset + Math.min(q.limit, 500)) };
      }
      case "settings":
        return this.settings;
      case "save_settings":
        this.settings = args.form as SettingsForm;
        return this.settings;
      case "sign_in": {
        const form = args.form as SignInForm;
        const err = this.signIn(form);
        if (err) throw err;
        this.snap = defaultSnapshot({ account: { email: "dev@example.com", server: form.server, plan: "Team", hard_limit: false } });
        return this.snap;
      }
      case "sign_out":
        this.snap = { ...signedOut(), now: this.snap.now };
        return this.snap;
      case "pause": {
        const choice = args.choice as PauseChoice;
        const paused_until = choice === "resume" ? null : this.snap.now + 3600;
        this.snap = { ...this.snap, paused_until, tray: { ...this.snap.tray, paused: paused_until !== null } };
        return this.snap;
      }
      default:
        throw { code: "internal", message: `unknown command ${command}`, field: null } satisfies IpcError;
    }
  }

  private queryBuilds(q: BuildQuery) {
    if (q.limit > 500) throw { code: "invalid", message: "limit over 500", field: "limit" } satisfies IpcError;
    if (!Array.isArray(this.builds)) {
      const src = this.builds;
      const rows: BuildEntry[] = [];
      for (let i = q.offset; i < Math.min(src.total, q.offset + q.limit); i++) rows.push(src.at(i));
      return { total: src.total, offset: q.offset, rows };
    }
    const s = q.search?.toLowerCase() ?? null;
    const hits = this.builds.filter(
      (b) =>
        (s === null || [b.app, b.version, b.commit].some((v) => v.toLowerCase().includes(s))) &&
        (q.app === null || b.app === q.app) &&
        (q.status === null || b.status === q.status) &&
        (q.since === null || b.created_at.slice(0, 10) >= q.since) &&
        (q.until === null || b.created_at.slice(0, 10) <= q.until),
    );
    return { total: hits.length, offset: q.offset, rows: hits.slice(q.offset, q.offset + q.limit) };
  }
}

export { NOW };
