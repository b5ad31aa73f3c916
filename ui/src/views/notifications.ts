// Notifications: the log of what was shown and what was held back (and why), newest first, a
// page at a time.
import type { IpcError } from "../bindings/IpcError";
import type { NotificationEntry } from "../bindings/NotificationEntry";
import type { NotificationFilter } from "../bindings/NotificationFilter";
import type { NotificationKind } from "../bindings/NotificationKind";
import type { NotificationState } from "../bindings/NotificationState";
import { errorState } from "../components/error-state";
import { h, replace } from "../dom";
import { plural, unixDateTime } from "../format";
import type { ViewContext, ViewInstance } from "./view";

export const NOTIFICATION_PAGE_SIZE = 50;
const MAX_LIMIT = 500;

const STATE_TEXT: Record<NotificationState, string> = {
  pending: "Pending",
  sending: "Sending",
  held: "Held for the digest",
  shown: "Shown",
  suppressed: "Suppressed",
  digested: "In a digest",
  failed: "Failed",
};

const KIND_TEXT: Record<NotificationKind, string> = {
  quota: "Quota",
  build_rejected: "Rejected build",
  notice: "Notice from the service",
  plan_changed: "Plan change",
  digest: "Catch-up digest",
  pace_warning: "Early warning",
  runaway: "Unusual build rate",
  refill: "Quota refilled",
};

const FILTER_TEXT: Record<NotificationFilter, string> = {
  all: "All decisions",
  not_shown: "Not shown, and why",
};

function row(n: NotificationEntry): HTMLElement {
  return h(
    "li",
    { class: `notification state-${n.state}`, "data-testid": "notification-row", "data-state": n.state },
    h(
      "div",
      { class: "n-head" },
      h("span", { class: "n-title" }, n.title),
      n.urgent ? h("span", { class: "badge urgent" }, "Urgent") : null,
      h("span", { class: `badge state state-${n.state}` }, STATE_TEXT[n.state] ?? n.state),
    ),
    n.body ? h("p", { class: "n-body" }, n.body) : null,
    h("p", { class: "n-why", "data-testid": "notification-why" }, n.why),
    h("p", { class: "n-time muted" }, h("time", { title: unixDateTime(n.at) }, `${unixDateTime(n.at)} (${n.ago})`), ` · ${KIND_TEXT[n.kind]}`),
  );
}

export function notificationsView(ctx: ViewContext): ViewInstance {
  const total = h("p", { class: "total", "data-testid": "notifications-total", "aria-live": "polite" }, "Loading…");
  const list = h("ol", { class: "notifications", "aria-label": "Notification log", "data-testid": "notifications-list" });
  const status = h("div");
  const more = h("button", { type: "button", class: "btn", "data-testid": "notifications-more", hidden: true, on: { click: () => void loadMore() } }, "Show older");
  let rows: NotificationEntry[] = [];
  let count = 0;
  let busy = false;
  let refreshQueued = false;
  let filter: NotificationFilter = "all";
  const filterEl = h(
    "select",
    {
      "data-testid": "notifications-filter",
      "aria-label": "Show",
      on: {
        change: () => {
          filter = filterEl.value as NotificationFilter;
          rows = [];
          void first();
        },
      },
    },
    ...(Object.entries(FILTER_TEXT) as [NotificationFilter, string][]).map(([value, text]) => h("option", { value }, text)),
  );

  function render(): void {
    total.textContent = filter === "all" ? plural(count, "notification") : `${plural(count, "decision")} not shown as they came`;
    if (rows.length === 0) replace(list, h("li", { class: "empty", "data-testid": "notifications-empty" }, "No notifications yet."));
    else replace(list, rows.map((n) => row(n)));
    more.hidden = rows.length >= count;
  }

  async function fetch(offset: number, limit: number, onError: () => void): Promise<void> {
    busy = true;
    more.disabled = true;
    try {
      const page = await ctx.api.call({ call: "notifications", args: { offset, limit, filter } });
      rows = offset === 0 ? page.rows : rows.concat(page.rows);
      count = page.total;
      replace(status);
      render();
    } catch (e) {
      replace(status, errorState(e as IpcError, onError, "Couldn't load notifications"));
    } finally {
      busy = false;
      more.disabled = false;
      if (refreshQueued) {
        refreshQueued = false;
        void refresh();
      }
    }
  }

  const first = () => fetch(0, NOTIFICATION_PAGE_SIZE, () => void first());
  const loadMore = () => (busy ? Promise.resolve() : fetch(rows.length, NOTIFICATION_PAGE_SIZE, () => void loadMore()));
  // New entries arrive at the top: reload what is shown (up to one request's worth).
  const refresh = () => {
    if (busy) {
      refreshQueued = true;
      return Promise.resolve();
    }
    const n = Math.min(MAX_LIMIT, Math.max(NOTIFICATION_PAGE_SIZE, rows.length));
    return fetch(0, n, () => void refresh());
  };

  const el = h(
    "section",
    { class: "notifications-view", "aria-labelledby": "notifications-title" },
    h("h2", { id: "notifications-title" }, "Notifications"),
    h("div", { class: "n-filter" }, filterEl),
    total,
    status,
    list,
    more,
  );
  void first();
  return {
    el,
    update() {
      void refresh();
    },
  };
}
