// All accounts at a glance: each one's meters and connection, a way to show it, and a way to add one.
import type { AccountSummary } from "../bindings/AccountSummary";
import type { IpcError } from "../bindings/IpcError";
import type { Snapshot } from "../bindings/Snapshot";
import { errorState } from "../components/error-state";
import { h, replace } from "../dom";
import type { ViewContext, ViewInstance } from "./view";

/** The state in words, once for the overview (the tray icon says the same by its colour). */
const STATE_TEXT: Record<AccountSummary["state"], string> = {
  ok: "OK",
  warning: "Near a limit",
  over: "At or over a limit",
  paused: "Notifications paused",
  offline: "Offline",
  signed_out: "Signed out: sign in again",
};

export function accountsView(ctx: ViewContext): ViewInstance {
  const list = h("ul", { class: "account-list", "data-testid": "account-list" });
  const error = h("div");
  const add = h("button", { type: "button", class: "btn", "data-testid": "accounts-add", on: { click: () => ctx.navigate("sign_in") } }, "Add an account…");
  const el = h("section", { class: "accounts", "aria-labelledby": "accounts-title" }, h("h2", { id: "accounts-title" }, "All accounts"), list, error, h("div", { class: "actions" }, add));

  function card(a: AccountSummary): HTMLElement {
    const show = h(
      "button",
      {
        type: "button",
        class: "btn",
        "data-testid": `account-show-${a.account.id}`,
        on: {
          click: () =>
            void ctx.selectAccount(a.account.id).catch((e: unknown) => replace(error, errorState(e as IpcError, () => void ctx.selectAccount(a.account.id), "Couldn't show that account"))),
        },
      },
      "Show usage",
    );
    return h(
      "li",
      { class: `account-card state-${a.state}`, "data-testid": `account-card-${a.account.id}` },
      h("h3", { class: "account-name" }, a.account.name),
      h("p", { class: "muted account-where" }, `${a.account.email} on ${a.account.server} · ${a.account.plan}`),
      h("p", { class: "account-state", "data-testid": "account-state" }, STATE_TEXT[a.state], a.synced_ago ? ` · synced ${a.synced_ago}` : ""),
      h(
        "ul",
        { class: "account-meters" },
        a.meters.map((m) => h("li", { "data-testid": `account-meter-${m.metric}` }, `${m.label} ${m.used} / ${m.limit}`, m.note ? ` — ${m.note}` : "")),
      ),
      show,
    );
  }

  function render(s: Snapshot): void {
    replace(list, ...s.accounts.map(card));
  }

  render(ctx.snapshot());
  return {
    el,
    update: (next) => render(next),
  };
}
