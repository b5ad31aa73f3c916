// Builds: the history, searchable and filtered, in a virtual list paged by offset.
import type { BuildEntry } from "../bindings/BuildEntry";
import type { BuildQuery } from "../bindings/BuildQuery";
import type { BuildStatus } from "../bindings/BuildStatus";
import type { IpcError } from "../bindings/IpcError";
import type { Snapshot } from "../bindings/Snapshot";
import { errorState } from "../components/error-state";
import { field } from "../components/field";
import { h, replace } from "../dom";
import { isYmd, plural, rfcDateTime } from "../format";
import { VirtualList } from "../virtual-list";
import type { ViewContext, ViewInstance } from "./view";

export const BUILD_ROW_HEIGHT = 36;
export const BUILD_PAGE_SIZE = 200;
export const SEARCH_DEBOUNCE_MS = 250;

const STATUS_TEXT: Record<BuildStatus, string> = { accepted: "Accepted", overage: "Overage", rejected: "Rejected" };

function buildRow(b: BuildEntry): HTMLElement {
  return h(
    "div",
    { class: `build-row status-${b.status}`, "data-testid": "build-row", "data-key": b.key },
    h("span", { class: "c-time" }, rfcDateTime(b.created_at)),
    h("span", { class: "c-app", title: b.app }, b.app),
    h("span", { class: "c-version", title: b.version }, b.version),
    h("span", { class: "c-commit mono", title: b.commit }, b.commit.slice(0, 10)),
    h("span", { class: `c-status badge status-${b.status}` }, STATUS_TEXT[b.status] ?? b.status),
    h("span", { class: "c-reason", title: b.reason ?? "" }, b.reason ?? ""),
  );
}

export function buildsView(ctx: ViewContext): ViewInstance {
  const search = field("Search", h("input", { type: "search", placeholder: "App, version or commit", "data-testid": "builds-search" }));
  const appSel = field("App", h("select", { "data-testid": "builds-app" }, h("option", { value: "" }, "All apps")));
  const statusSel = field(
    "Status",
    h(
      "select",
      { "data-testid": "builds-status" },
      h("option", { value: "" }, "All statuses"),
      (Object.keys(STATUS_TEXT) as BuildStatus[]).map((s) => h("option", { value: s }, STATUS_TEXT[s])),
    ),
  );
  const since = field("Since", h("input", { type: "date", "data-testid": "builds-since" }), { errorTestid: "builds-error-since" });
  const until = field("Until", h("input", { type: "date", "data-testid": "builds-until" }), { errorTestid: "builds-error-until" });
  const total = h("p", { class: "total", "data-testid": "builds-total", "aria-live": "polite" }, "Loading…");
  const gaps = h("p", { class: "note", "data-testid": "history-gaps", hidden: true });
  const errors = h("div", { class: "errors" });
  const appsError = h("div");
  const empty = h("p", { class: "empty", "data-testid": "builds-empty", hidden: true });

  let query: Omit<BuildQuery, "offset" | "limit"> = { search: null, app: null, status: null, since: null, until: null };
  let debounce: ReturnType<typeof setTimeout> | null = null;
  let lastTotal: number | null = null;

  const list = new VirtualList<BuildEntry>({
    label: "Build history",
    testid: "builds-list",
    rowHeight: BUILD_ROW_HEIGHT,
    pageSize: BUILD_PAGE_SIZE,
    fetchPage: (offset, limit) => ctx.api.call({ call: "builds", args: { ...query, offset, limit } }),
    renderRow: buildRow,
    onTotal: (n) => {
      total.textContent = plural(n, "build");
      const filtered = Object.values(query).some((v) => v !== null);
      empty.hidden = n !== 0;
      empty.textContent = filtered ? "No builds match these filters." : "No builds yet.";
      if (lastTotal !== null && n !== lastTotal && !filtered) void loadApps();
      lastTotal = n;
    },
    onError: (err) => {
      if (err === null) replace(errors);
      else replace(errors, errorState(err as IpcError, () => list.retry(), "Couldn't load builds"));
    },
  });

  async function loadApps(): Promise<void> {
    try {
      const apps = await ctx.api.call({ call: "build_apps" });
      const cur = appSel.control.value;
      replace(appSel.control, h("option", { value: "" }, "All apps"), apps.map((a) => h("option", { value: a }, a)));
      appSel.control.value = apps.includes(cur) ? cur : "";
      replace(appsError);
    } catch (e) {
      replace(appsError, errorState(e as IpcError, () => void loadApps(), "Couldn't load the app list"));
    }
  }

  function apply(): void {
    const s = since.control.value;
    const u = until.control.value;
    since.setError(s && !isYmd(s) ? "Use YYYY-MM-DD." : null);
    until.setError(u && !isYmd(u) ? "Use YYYY-MM-DD." : s && u && u < s ? "Until is before since." : null);
    if ((s && !isYmd(s)) || (u && !isYmd(u)) || (s && u && u < s)) return;
    const text = search.control.value.trim();
    query = {
      search: text === "" ? null : text,
      app: appSel.control.value || null,
      status: (statusSel.control.value || null) as BuildStatus | null,
      since: s || null,
      until: u || null,
    };
    total.textContent = "Loading…";
    empty.hidden = true;
    list.reset();
  }

  search.control.addEventListener("input", () => {
    if (debounce !== null) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = null;
      apply();
    }, SEARCH_DEBOUNCE_MS);
  });
  for (const f of [appSel, statusSel, since, until]) f.control.addEventListener("change", apply);

  function renderGaps(s: Snapshot): void {
    gaps.hidden = s.history_gaps === 0;
    gaps.textContent =
      s.history_gaps === 0
        ? ""
        : `Some history is missing from the cache (${plural(s.history_gaps, "gap")}): the server's history was resynced, so older builds may not all be listed.`;
  }

  const el = h(
    "section",
    { class: "builds", "aria-labelledby": "builds-title" },
    h("h2", { id: "builds-title" }, "Builds"),
    h("div", { class: "filters", role: "search" }, search.row, appSel.row, statusSel.row, since.row, until.row),
    appsError,
    gaps,
    total,
    errors,
    empty,
    h(
      "div",
      { class: "build-head", "aria-hidden": "true" },
      ["Time", "App", "Version", "Commit", "Status", "Reason"].map((t) => h("span", null, t)),
    ),
    list.el,
  );

  renderGaps(ctx.snapshot());
  void loadApps();
  list.reset();

  return {
    el,
    update(next) {
      renderGaps(next);
      list.refresh();
    },
    destroy() {
      if (debounce !== null) clearTimeout(debounce);
      list.destroy();
    },
  };
}
