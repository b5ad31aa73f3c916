// The offline banner: shown on every view while signed in and the connection isn't live.
import type { Snapshot } from "../bindings/Snapshot";
import { h, replace } from "../dom";
import { unixDateTime } from "../format";

export function isLive(s: Snapshot): boolean {
  return s.connection === "connected" || s.connection === "polling";
}

/** The banner's text, or null when none is due. */
export function bannerText(s: Snapshot): string | null {
  if (!s.account || isLive(s)) return null;
  // With one account the sign-in view says this; with several, the others stay usable.
  if (s.connection === "signed_out" && s.accounts.length > 1) return `The server refused the token of ${s.account.name}: sign in to it again (Settings → Add another account)`;
  if (s.last_synced_at === null) return "Offline — never synced";
  return `Offline — showing cached data from ${unixDateTime(s.last_synced_at)} (${s.synced_ago ?? ""})`;
}

export class Banner {
  // The live region exists from the start so screen readers announce when text arrives.
  readonly el = h("div", { class: "banner", role: "status", "aria-live": "polite", "data-testid": "offline-banner", hidden: true });

  private shown: string | null = null;

  update(s: Snapshot | null): void {
    const text = s ? bannerText(s) : null;
    // Touch the live region only when what it says changes, so it isn't re-announced.
    const key = text === null ? null : `${text}\n${s?.connection_detail ?? ""}`;
    if (key === this.shown) return;
    this.shown = key;
    if (text === null) {
      this.el.hidden = true;
      replace(this.el);
      return;
    }
    this.el.hidden = false;
    replace(this.el, h("span", { class: "banner-text" }, text), s?.connection_detail ? h("span", { class: "banner-detail" }, s.connection_detail) : null);
  }
}
