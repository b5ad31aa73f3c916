// What every view gets, and what it gives back to the shell.
import type { Snapshot } from "../bindings/Snapshot";
import type { View } from "../bindings/View";
import type { Api } from "../ipc";

export interface ViewContext {
  api: Api;
  /** The latest snapshot (the shell keeps it current from the `snapshot` event). */
  snapshot(): Snapshot;
  /** A command returned a snapshot (sign in, sign out, pause): show it everywhere. */
  applySnapshot(s: Snapshot): void;
  navigate(v: View): void;
  /** Show one account (of several) on the Usage view. */
  selectAccount(id: number): Promise<void>;
}

export interface ViewInstance {
  el: HTMLElement;
  /** A new snapshot arrived while this view is open. */
  update?(next: Snapshot, prev: Snapshot): void;
  destroy?(): void;
}

export type ViewFactory = (ctx: ViewContext) => ViewInstance;
