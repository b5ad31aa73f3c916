// An in-memory engine behind the Transport interface: answers every `Call` (a switch on its tag
// that fails to compile when a call is missing), records every call, can fail or hold any call,
// and emits events like the Rust side does.
import type { BuildEntry } from "../src/bindings/BuildEntry";
import type { BuildPage } from "../src/bindings/BuildPage";
import type { BuildQuery } from "../src/bindings/BuildQuery";
import type { Finding } from "../src/bindings/Finding";
import type { IpcError } from "../src/bindings/IpcError";
import type { NotificationEntry } from "../src/bindings/NotificationEntry";
import type { SettingsForm } from "../src/bindings/SettingsForm";
import type { SignInForm } from "../src/bindings/SignInForm";
import type { Snapshot } from "../src/bindings/Snapshot";
import type { UsageSeries } from "../src/bindings/UsageSeries";
import type { Call, CallName, CallOf, Replies, Transport, Unlisten } from "../src/ipc";
import { NOW, settings as defaultSettings, snapshot as defaultSnapshot, signedOut } from "./fixtures";

/** Builds by index, newest first: an array, or made on demand (100,000 rows cost nothing). */
export type BuildSource = BuildEntry[] | { total: number; at(index: number): BuildEntry };

/** A reply checked against the UI's reply map for the call's tag. */
const reply = <K extends CallName>(_call: K, value: Replies[K]): Replies[K] => value;

export class FakeBackend implements Transport {
  calls: Call[] = [];
  snap: Snapshot = defaultSnapshot();
  history: UsageSeries[] = [];
  builds: BuildSource = [];
  apps: string[] | null = null;
  notifications: NotificationEntry[] = [];
  settings: SettingsForm = defaultSettings();
  /** What `diagnose` answers. */
  findings: Finding[] = [];
  /** Snapshots by account id, for `select_account` (the current one when absent). */
  byAccount = new Map<number, Snapshot>();
  /** Validate sign-in: return an error to reject with, or null to accept. */
  signIn: (form: SignInForm) => IpcError | null = () => null;
  private failures = new Map<CallName, { err: unknown; once: boolean }>();
  private holds = new Map<CallName, Promise<void>>();
  private handlers = new Map<string, Set<(p: unknown) => void>>();

  constructor(init: Partial<Pick<FakeBackend, "snap" | "history" | "builds" | "apps" | "notifications" | "settings">> = {}) {
    Object.assign(this, init);
  }

  /** Make the call `name` reject with `err` (every time, or only the next time). */
  fail(name: CallName, err: unknown, once = false): void {
    this.failures.set(name, { err, once });
  }

  heal(name: CallName): void {
    this.failures.delete(name);
  }

  /** Hold the replies to the call `name` until the returned function is called. */
  hold(name: CallName): () => void {
    let release!: () => void;
    this.holds.set(name, new Promise<void>((r) => (release = r)));
    return () => {
      this.holds.delete(name);
      release();
    };
  }

  emit(event: string, payload: unknown): void {
    for (const h of this.handlers.get(event) ?? []) h(payload);
  }

  listenerCount(event: string): number {
    return this.handlers.get(event)?.size ?? 0;
  }

  /** The calls of one tag, in order, typed with their `args`. */
  callsOf<K extends CallName>(name: K): CallOf<K>[] {
    return this.calls.filter((c): c is CallOf<K> => c.call === name);
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

  async call(c: Call): Promise<unknown> {
    this.calls.push(structuredClone(c));
    const held = this.holds.get(c.call);
    if (held) await held;
    await Promise.resolve();
    const f = this.failures.get(c.call);
    if (f) {
      if (f.once) this.failures.delete(c.call);
      throw f.err;
    }
    return structuredClone(this.answer(c));
  }

  private answer(c: Call): Replies[CallName] {
    switch (c.call) {
      case "snapshot":
        return reply(c.call, this.snap);
      case "usage_history":
        return reply(c.call, this.history);
      case "builds":
        return reply(c.call, this.queryBuilds(c.args));
      case "build_apps":
        return reply(c.call, this.apps ?? (Array.isArray(this.builds) ? [...new Set(this.builds.map((b) => b.app))].sort() : ["app-0", "app-1", "app-2", "app-3", "app-4"]));
      case "notifications": {
        const q = c.args;
        // As the engine filters: "not shown" is every state but shown.
        const all = q.filter === "not_shown" ? this.notifications.filter((n) => n.state !== "shown") : this.notifications;
        return reply(c.call, { total: all.length, offset: q.offset, rows: all.slice(q.offset, q.offset + Math.min(q.limit, 500)) });
      }
      case "settings":
        return reply(c.call, this.settings);
      case "save_settings":
        this.settings = c.args;
        return reply(c.call, this.settings);
      case "sign_in": {
        const form = c.args;
        const err = this.signIn(form);
        if (err) throw err;
        this.snap = defaultSnapshot({ account: { id: 1, name: form.name || "dev@example.com", email: "dev@example.com", server: form.server, plan: "Team", hard_limit: false } });
        return reply(c.call, this.snap);
      }
      case "sign_out": {
        // As the companion does: the others stay, the first of them shown.
        const rest = this.snap.accounts.filter((a) => a.account.id !== c.args.account);
        const next = rest.length > 0 ? this.byAccount.get(rest[0].account.id) : undefined;
        this.snap = next ? { ...next, accounts: rest, now: this.snap.now } : { ...signedOut(), now: this.snap.now };
        return reply(c.call, this.snap);
      }
      case "select_account": {
        const next = this.byAccount.get(c.args.account);
        if (!next) throw { code: "not_signed_in", message: "that account is no longer signed in", field: null } satisfies IpcError;
        this.snap = { ...next, now: this.snap.now };
        return reply(c.call, this.snap);
      }
      case "diagnose":
        return reply(c.call, this.findings);
      case "pause": {
        const paused_until = c.args === "resume" ? null : this.snap.now + 3600;
        this.snap = { ...this.snap, paused_until, tray: { ...this.snap.tray, paused: paused_until !== null } };
        return reply(c.call, this.snap);
      }
      default: {
        // A call added to the Rust `Call` and not answered here fails to compile.
        const _: never = c;
        throw { code: "internal", message: `unknown call ${JSON.stringify(_)}`, field: null } satisfies IpcError;
      }
    }
  }

  private queryBuilds(q: BuildQuery): BuildPage {
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
