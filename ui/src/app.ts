// The window's shell: nav, offline banner and the open view. Keeps the latest snapshot, from the
// `snapshot` command once and the `snapshot` event after that (never by polling).
import type { IpcError } from "./bindings/IpcError";
import type { Snapshot } from "./bindings/Snapshot";
import type { View } from "./bindings/View";
import { Banner } from "./components/banner";
import { errorState } from "./components/error-state";
import { h, replace } from "./dom";
import { toIpcError, type Api, type Unlisten } from "./ipc";
import { accountsView } from "./views/accounts";
import { buildsView } from "./views/builds";
import { diagnosticsView } from "./views/diagnostics";
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
  accounts: accountsView,
  diagnostics: diagnosticsView,
};

/** Signed out, or the server refused the token of the only account: only Sign-in can help. */
export function needsSignIn(s: Snapshot): boolean {
  return s.account == null || (s.connection === "signed_out" && s.accounts.length <= 1);
}

/** Views that work signed out too. */
const ALWAYS: readonly View[] = ["sign_in", "diagnostics"];

/** The switcher's entry for the overview. */
const ALL = "all";

const NAV: { view: View; label: string }[] = [
  { view: "usage", label: "Usage" },
  { view: "builds", label: "Builds" },
  { view: "notifications", label: "Notifications" },
  { view: "settings", label: "Settings" },
];

export const VIEW_NAMES: readonly View[] = ["sign_in", "usage", "builds", "notifications", "settings", "accounts", "diagnostics"];

export class App {
  private snap: Snapshot | null = null;
  private view: View = "usage";
  private open: { name: View; inst: ViewInstance } | null = null;
  private unlisten: Unlisten[] = [];
  private readonly banner = new Banner();
  private readonly navButtons = new Map<View, HTMLButtonElement>();
  private readonly nav: HTMLElement;
  private readonly account = h("p", { class: "account", "data-testid": "account" });
  private readonly switcher = h("select", { class: "account-switcher", "aria-label": "Account", "data-testid": "account-switcher", hidden: true });
  private switcherKey = "";
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
    // Adding an account is asked for from Settings or the overview, never by a URL.
    if (VIEW_NAMES.includes(first) && first !== "sign_in") this.view = first;
    this.switcher.addEventListener("change", () => void this.onSwitch());
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
      selectAccount: (id) => this.selectAccount(id),
    };
    replace(
      root,
      h("header", { class: "topbar" }, h("h1", { class: "brand" }, "Quotabell"), this.nav, this.account, this.switcher),
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

  /** Switch views. Signed out, only Sign-in and Diagnostics can show; signed in, Sign-in adds an account. */
  show(v: View): void {
    if (this.destroyed) return;
    this.view = v;
    if (!this.snap) return;
    const target: View = needsSignIn(this.snap) && !ALWAYS.includes(v) ? "sign_in" : v;
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
      this.show(isIn || ALWAYS.includes(this.view) ? this.view : "sign_in");
      return;
    }
    // Another account is shown (switched, or the shown one signed out): views reload from it.
    if (prev?.account?.id !== s.account?.id && this.open.name !== "sign_in") {
      const name = this.open.name;
      this.open.inst.destroy?.();
      this.open = null;
      this.show(name);
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
    const a = s?.account;
    const several = signedIn && s!.accounts.length > 1;
    replace(this.account, a && signedIn ? `${a.name === a.email ? a.email : `${a.name} (${a.email})`} · ${a.plan}` : "");
    this.account.hidden = !signedIn || several;
    this.renderSwitcher(several ? s! : null);
  }

  /** With several accounts: one entry each, and the overview. Rebuilt only when they change. */
  private renderSwitcher(s: Snapshot | null): void {
    this.switcher.hidden = s === null;
    if (s === null) return;
    const current = this.open?.name === "accounts" ? ALL : String(s.account!.id);
    const key = JSON.stringify(s.accounts.map((a) => [a.account.id, a.account.name, a.state]));
    if (key !== this.switcherKey) {
      this.switcherKey = key;
      replace(
        this.switcher,
        ...s.accounts.map((a) => h("option", { value: String(a.account.id) }, a.account.name)),
        h("option", { value: ALL }, "All accounts"),
      );
    }
    this.switcher.value = current;
  }

  private async onSwitch(): Promise<void> {
    const value = this.switcher.value;
    if (value === ALL) return this.show("accounts");
    try {
      this.applySnapshot(await this.api.call({ call: "select_account", args: { account: Number(value) } }));
      if (this.open?.name === "accounts") this.show("usage");
    } catch (e) {
      replace(this.main, errorState(toIpcError(e), () => void this.onSwitch(), "Couldn't switch accounts"));
    }
  }

  /** The overview's and the notifications' way to show one account. */
  async selectAccount(id: number): Promise<void> {
    this.applySnapshot(await this.api.call({ call: "select_account", args: { account: id } }));
    this.show("usage");
  }
}
