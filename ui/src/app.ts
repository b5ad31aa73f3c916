// The window's shell: nav, offline banner and the open view. Keeps the latest snapshot, from the
// `snapshot` command once and the `snapshot` event after that (never by polling).
import type { IpcError } from "./bindings/IpcError";
import type { Snapshot } from "./bindings/Snapshot";
import type { View } from "./bindings/View";
import { Banner } from "./components/banner";
import { errorState } from "./components/error-state";
import { h, replace } from "./dom";
import { toIpcError, type Api, type Unlisten } from "./ipc";
import { buildsView } from "./views/builds";
import { notificationsView } from "./views/notifications";
import { settingsView } from "./views/settings";
import { signInView } from "./views/signin";
import { usageView } from "./views/usage";
import type { ViewContext, ViewFactory, ViewInstance } from "./views/view";

const VIEWS: Record<View, ViewFactory> = {
  sign_in: signInView,
  usage: usageView,
  builds: buildsView,
  notifications: notificationsView,
  settings: settingsView,
};

/** Signed out, or the server refused the stored token: only Sign-in can help. */
export function needsSignIn(s: Snapshot): boolean {
  return s.account == null || s.connection === "signed_out";
}

const NAV: { view: View; label: string }[] = [
  { view: "usage", label: "Usage" },
  { view: "builds", label: "Builds" },
  { view: "notifications", label: "Notifications" },
  { view: "settings", label: "Settings" },
];

export const VIEW_NAMES: readonly View[] = ["sign_in", "usage", "builds", "notifications", "settings"];

export class App {
  private snap: Snapshot | null = null;
  private view: View = "usage";
  private open: { name: View; inst: ViewInstance } | null = null;
  private unlisten: Unlisten[] = [];
  private readonly banner = new Banner();
  private readonly navButtons = new Map<View, HTMLButtonElement>();
  private readonly nav: HTMLElement;
  private readonly account = h("p", { class: "account", "data-testid": "account" });
  private readonly main = h("main", { class: "view", id: "view", tabindex: "-1" });
  private readonly ctx: ViewContext;
  private destroyed = false;

  constructor(
    root: HTMLElement,
    private readonly api: Api,
    initial: string = "",
  ) {
    // The tray opens the window on a view by its URL's fragment (`index.html#builds`).
    const first = initial.replace(/^#/, "") as View;
    if (VIEW_NAMES.includes(first) && first !== "sign_in") this.view = first;
    this.nav = h(
      "nav",
      { class: "nav", "aria-label": "Views", hidden: true },
      NAV.map(({ view, label }) => {
        const b = h("button", { type: "button", class: "nav-item", "data-testid": `nav-${view}`, on: { click: () => this.show(view) } }, label);
        this.navButtons.set(view, b);
        return b;
      }),
    );
    this.ctx = {
      api,
      snapshot: () => this.snap!,
      applySnapshot: (s) => this.applySnapshot(s),
      navigate: (v) => this.show(v),
    };
    replace(
      root,
      h("header", { class: "topbar" }, h("h1", { class: "brand" }, "Quotabell"), this.nav, this.account),
      this.banner.el,
      this.main,
    );
  }

  /** Listen first (so nothing pushed meanwhile is missed), then read the snapshot once. */
  async start(): Promise<void> {
    replace(this.main, h("p", { class: "loading", role: "status" }, "Loading…"));
    try {
      if (this.unlisten.length === 0) {
        this.unlisten.push(await this.api.onSnapshot((s) => this.applySnapshot(s)));
        this.unlisten.push(await this.api.onNavigate((v) => this.onNavigate(v)));
      }
    } catch (e) {
      for (const u of this.unlisten) u();
      this.unlisten = [];
      replace(this.main, errorState(toIpcError(e), () => void this.start(), "Couldn't connect to Quotabell's engine"));
      return;
    }
    await this.load();
  }

  destroy(): void {
    this.destroyed = true;
    for (const u of this.unlisten) u();
    this.unlisten = [];
    this.open?.inst.destroy?.();
    this.open = null;
  }

  currentView(): View | null {
    return this.open?.name ?? null;
  }

  private async load(): Promise<void> {
    replace(this.main, h("p", { class: "loading", role: "status" }, "Loading…"));
    try {
      const s = await this.api.call({ call: "snapshot" });
      this.applySnapshot(s);
    } catch (e) {
      if (this.snap) return; // an event got there first
      replace(this.main, errorState(e as IpcError, () => void this.load(), "Couldn't load from Quotabell's engine"));
    }
  }

  private onNavigate(v: View): void {
    if (!VIEW_NAMES.includes(v)) return;
    this.show(v);
  }

  /** Switch views. Signed out, only Sign-in can show; signed in, Sign-in isn't offered. */
  show(v: View): void {
    if (this.destroyed) return;
    if (v !== "sign_in") this.view = v;
    if (!this.snap) return;
    const target: View = needsSignIn(this.snap) ? "sign_in" : v === "sign_in" ? this.view : v;
    if (this.open?.name === target) return;
    this.open?.inst.destroy?.();
    const inst = VIEWS[target](this.ctx);
    this.open = { name: target, inst };
    replace(this.main, inst.el);
    this.renderChrome();
  }

  private applySnapshot(s: Snapshot): void {
    if (this.destroyed) return;
    // A reply can be older than an event already shown; the newer one wins.
    if (this.snap && s.now < this.snap.now) return;
    const prev = this.snap;
    this.snap = s;
    this.renderChrome();
    const wasIn = prev != null && !needsSignIn(prev);
    const isIn = !needsSignIn(s);
    if (!this.open || wasIn !== isIn) {
      if (isIn && !wasIn && prev) this.view = "usage";
      this.show(isIn ? this.view : "sign_in");
      return;
    }
    if (prev) this.open.inst.update?.(s, prev);
  }

  private renderChrome(): void {
    const s = this.snap;
    this.banner.update(s);
    const signedIn = s != null && !needsSignIn(s);
    this.nav.hidden = !signedIn;
    for (const [v, b] of this.navButtons) {
      if (this.open?.name === v) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    replace(this.account, signedIn ? `${s!.account!.email} · ${s!.account!.plan}` : "");
    this.account.hidden = !signedIn;
  }
}
