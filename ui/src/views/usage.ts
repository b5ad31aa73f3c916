// Usage: one bar per meter, the billing period, the connection, pause, and usage over time.
// Everything but the chart's history comes from the snapshot; live snapshots redraw it without a
// command, and extend the chart with their own readings.
import type { IpcError } from "../bindings/IpcError";
import type { Meter } from "../bindings/Meter";
import type { PauseChoice } from "../bindings/PauseChoice";
import type { Snapshot } from "../bindings/Snapshot";
import type { UsageSeries } from "../bindings/UsageSeries";
import { usageChart, type ChartRange, type Projection } from "../chart";
import { errorState } from "../components/error-state";
import { h, replace } from "../dom";
import { count, rfcDate, unixDateTime } from "../format";
import type { ViewContext, ViewInstance } from "./view";

const LEVEL_TEXT: Record<Meter["level"], string> = { ok: "OK", warning: "Warning", over: "Over limit" };

/** "At limit" reads better than "Over limit" for 100 / 100; the engine says which in `note`. */
function levelText(m: Meter): string {
  return m.level === "over" && m.note === "at limit" ? "At limit" : LEVEL_TEXT[m.level];
}

const CONNECTION_TEXT: Record<Snapshot["connection"], string> = {
  connecting: "Connecting…",
  connected: "Connected (live)",
  polling: "Connected (polling)",
  offline: "Offline",
  signed_out: "Signed out",
  stream_stopped: "Live updates stopped by the server",
};

export function meterEl(m: Meter): HTMLElement {
  const fill = h("div", { class: "meter-fill" });
  fill.style.setProperty("--pct", `${Math.min(100, Math.max(0, m.percent))}%`);
  const text = `${count(m.used)} / ${count(m.limit)}`;
  const bar = h(
    "div",
    {
      class: "meter-bar",
      role: "progressbar",
      "aria-label": m.label,
      "aria-valuemin": "0",
      "aria-valuemax": String(m.limit),
      "aria-valuenow": String(m.used),
      "aria-valuetext": `${text} (${m.percent}%) — ${levelText(m)}${m.note && m.note !== "at limit" ? `, ${m.note}` : ""}${m.effect ? `: ${m.effect}` : ""}`,
    },
    fill,
  );
  return h(
    "section",
    { class: `meter level-${m.level}`, "data-testid": `meter-${m.metric}`, "data-level": m.level },
    h(
      "div",
      { class: "meter-head" },
      h("h3", { class: "meter-label" }, m.label),
      h("span", { class: "meter-text", "data-testid": `meter-${m.metric}-text` }, text),
      h("span", { class: "meter-percent" }, `${m.percent}%`),
      h("span", { class: "meter-level", "data-testid": `meter-${m.metric}-level` }, levelText(m)),
    ),
    bar,
    m.note && m.note !== "at limit" ? h("p", { class: "meter-note", "data-testid": `meter-${m.metric}-note` }, m.note) : null,
    m.effect ? h("p", { class: "meter-effect", "data-testid": `meter-${m.metric}-effect` }, capitalised(m.effect)) : null,
    m.forecast ? h("p", { class: "meter-forecast", "data-testid": `meter-${m.metric}-forecast` }, m.forecast) : null,
  );
}

/** Each meter's projection, from its reading now to the period's end, for the chart. */
export function projections(s: Snapshot): Projection[] {
  const range = periodRange(s);
  if (!range || s.now >= range.end) return [];
  return s.meters.flatMap((m) => {
    const p = m.pace;
    if (!p || (p.kind !== "limit_before_end" && p.kind !== "within_limit")) return [];
    return [{ metric: m.metric, from: { at: s.now, used: m.used }, to: { at: range.end, used: p.at_period_end } }];
  });
}

function periodRange(s: Snapshot): ChartRange | null {
  if (!s.period) return null;
  const a = Date.parse(s.period.start);
  const b = Date.parse(s.period.end);
  return Number.isNaN(a) || Number.isNaN(b) ? null : { start: a / 1000, end: b / 1000 };
}

/** Add the snapshot's readings to the series (a new point only when a count moved). */
export function extendHistory(history: UsageSeries[], s: Snapshot): boolean {
  let changed = false;
  for (const m of s.meters) {
    let series = history.find((x) => x.metric === m.metric);
    if (!series) {
      series = { metric: m.metric, label: m.label, limit: m.limit, points: [] };
      history.push(series);
    }
    const last = series.points[series.points.length - 1];
    if (series.limit !== m.limit) {
      series.limit = m.limit;
      changed = true;
    }
    if ((!last || last.used !== m.used) && (!last || s.now >= last.at)) {
      series.points.push({ at: s.now, used: m.used });
      changed = true;
    }
  }
  return changed;
}

export function usageView(ctx: ViewContext): ViewInstance {
  const summary = h("div", { class: "usage-summary" });
  const meters = h("div", { class: "meters" });
  const pauseBox = h("div", { class: "pause" });
  const chartBox = h("div", { class: "chart-box" });
  let history: UsageSeries[] | null = null;
  let pausing = false;
  let pauseError: IpcError | null = null;

  const el = h(
    "section",
    { class: "usage", "aria-labelledby": "usage-title" },
    h("h2", { id: "usage-title" }, "Usage"),
    summary,
    meters,
    pauseBox,
    h("h3", null, "Usage over time"),
    chartBox,
  );

  function renderSummary(s: Snapshot): void {
    const a = s.account;
    const synced = s.synced_ago === null ? "never synced" : `last synced ${s.synced_ago}`;
    replace(
      summary,
      h(
        "p",
        { class: `connection conn-${s.connection}`, "data-testid": "connection-status" },
        h("span", { class: "conn-dot", "aria-hidden": "true" }),
        `${CONNECTION_TEXT[s.connection]} · `,
        h("span", { "data-testid": "last-synced", title: s.last_synced_at === null ? undefined : unixDateTime(s.last_synced_at) }, synced),
        s.connection_detail ? h("span", { class: "conn-detail" }, ` — ${s.connection_detail}`) : null,
      ),
      s.period
        ? h("p", { class: "period", "data-testid": "billing-period" }, `Billing period: ${rfcDate(s.period.start)} – ${rfcDate(s.period.end)}`)
        : h("p", { class: "period muted" }, "Billing period not known yet."),
      a
        ? h(
            "p",
            { class: "plan muted" },
            `${a.plan} plan on ${a.server} · ${a.hard_limit ? "builds past a limit are refused" : "builds past a limit are billed as overage"}`,
          )
        : null,
    );
  }

  function renderMeters(s: Snapshot): void {
    if (s.meters.length === 0) replace(meters, h("p", { class: "empty", "data-testid": "meters-empty" }, "No usage reported yet."));
    else replace(meters, s.meters.map(meterEl));
  }

  async function doPause(choice: PauseChoice): Promise<void> {
    pausing = true;
    pauseError = null;
    renderPause(ctx.snapshot());
    try {
      ctx.applySnapshot(await ctx.api.call({ call: "pause", args: choice }));
    } catch (e) {
      pauseError = e as IpcError;
    } finally {
      pausing = false;
      renderPause(ctx.snapshot());
    }
  }

  function renderPause(s: Snapshot): void {
    const btn = (label: string, choice: PauseChoice, testid: string) =>
      h("button", { type: "button", class: "btn", disabled: pausing, "data-testid": testid, on: { click: () => void doPause(choice) } }, label);
    const paused = s.paused_until !== null && s.paused_until > s.now;
    replace(
      pauseBox,
      paused
        ? [h("span", null, `Notifications paused until ${unixDateTime(s.paused_until!)}. `), btn("Resume", "resume", "pause-resume")]
        : [h("span", null, "Pause notifications: "), btn("1 hour", "one_hour", "pause-hour"), btn("Until tomorrow", "until_tomorrow", "pause-tomorrow")],
      pauseError ? h("p", { class: "field-error", role: "alert" }, pauseError.message) : null,
    );
  }

  function renderChart(s: Snapshot): void {
    if (history === null) return;
    if (history.every((x) => x.points.length === 0)) {
      replace(chartBox, h("p", { class: "empty", "data-testid": "chart-empty" }, "No usage history yet."));
      return;
    }
    replace(chartBox, usageChart(history, periodRange(s), projections(s)));
  }

  async function loadHistory(): Promise<void> {
    replace(chartBox, h("p", { class: "loading", role: "status" }, "Loading usage history…"));
    try {
      history = await ctx.api.call({ call: "usage_history" });
      // The readings of the snapshot in hand are points too (the history may have been read
      // before the first sync stored any, and no newer snapshot may come for a while).
      extendHistory(history, ctx.snapshot());
      renderChart(ctx.snapshot());
    } catch (e) {
      replace(chartBox, errorState(e as IpcError, () => void loadHistory(), "Couldn't load usage history"));
    }
  }

  const s0 = ctx.snapshot();
  renderSummary(s0);
  renderMeters(s0);
  renderPause(s0);
  void loadHistory();

  return {
    el,
    update(next) {
      renderSummary(next);
      renderMeters(next);
      renderPause(next);
      // The projection moves with every snapshot, so the chart is drawn again for each.
      if (history) {
        extendHistory(history, next);
        renderChart(next);
      }
    },
  };
}

function capitalised(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
