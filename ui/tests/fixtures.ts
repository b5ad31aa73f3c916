// Data for the fake backend.
import type { AccountSummary } from "../src/bindings/AccountSummary";
import type { BuildEntry } from "../src/bindings/BuildEntry";
import type { Meter } from "../src/bindings/Meter";
import type { NotificationEntry } from "../src/bindings/NotificationEntry";
import type { SettingsForm } from "../src/bindings/SettingsForm";
import type { Snapshot } from "../src/bindings/Snapshot";
import type { UsageSeries } from "../src/bindings/UsageSeries";

export const NOW = 1_795_000_000; // 2026-11-18
export const XSS = "<img src=x onerror=alert(1)>";

export function meter(over: Partial<Meter> = {}): Meter {
  return { metric: "builds", label: "Builds", used: 42, limit: 100, percent: 42, level: "ok", note: null, effect: null, pace: null, forecast: null, ...over };
}

/** The snapshot's `accounts` is its one account's summary unless `over` gives it. */
export function snapshot(over: Partial<Snapshot> = {}): Snapshot {
  const s = snapshotOf(over);
  if (!("accounts" in over)) s.accounts = s.account ? [summaryOf(s)] : [];
  return s;
}

export function summaryOf(s: Snapshot): AccountSummary {
  return { account: s.account!, meters: s.meters, connection: s.connection, state: s.tray.state, synced_ago: s.synced_ago };
}

function snapshotOf(over: Partial<Snapshot>): Snapshot {
  return {
    account: { id: 1, name: "dev@example.com", email: "dev@example.com", server: "http://127.0.0.1:8787", plan: "Team", hard_limit: false },
    meters: [meter(), meter({ metric: "applications", label: "Applications", used: 4, limit: 5, percent: 80, level: "warning" })],
    period: { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" },
    connection: "connected",
    connection_detail: null,
    connection_since: NOW - 3600,
    last_synced_at: NOW - 120,
    synced_ago: "2 min ago",
    paused_until: null,
    history_gaps: 0,
    revision: 1,
    accounts: [],
    tray: { state: "ok", tooltip: "Quotabell", lines: [], paused: false },
    now: NOW,
    ...over,
  };
}

export const signedOut = (): Snapshot =>
  snapshot({ account: null, meters: [], period: null, connection: "signed_out", last_synced_at: null, synced_ago: null, tray: { state: "signed_out", tooltip: "", lines: [], paused: false } });

export function build(i: number, over: Partial<BuildEntry> = {}): BuildEntry {
  return {
    key: `b:${i}`,
    build_id: i,
    app: `app-${i % 5}`,
    version: `1.0.${i}`,
    commit: `c0ffee${String(i).padStart(6, "0")}`,
    status: i % 11 === 0 ? "rejected" : i % 7 === 0 ? "overage" : "accepted",
    reason: i % 11 === 0 ? "limit reached" : null,
    created_at: new Date((NOW - i * 60) * 1000).toISOString(),
    ...over,
  };
}

export function notification(id: number, over: Partial<NotificationEntry> = {}): NotificationEntry {
  return {
    id,
    at: NOW - id * 300,
    ago: `${id * 5} min ago`,
    kind: "quota",
    title: `Builds at ${id}%`,
    body: `You have used ${id} builds.`,
    urgent: false,
    state: "shown",
    reason: null,
    why: "Shown as it came.",
    ...over,
  };
}

export function history(): UsageSeries[] {
  return [
    { metric: "builds", label: "Builds", limit: 100, points: [{ at: NOW - 86400 * 10, used: 10 }, { at: NOW - 86400 * 2, used: 30 }, { at: NOW - 600, used: 42 }] },
    { metric: "applications", label: "Applications", limit: 5, points: [{ at: NOW - 86400 * 10, used: 2 }, { at: NOW - 600, used: 4 }] },
  ];
}

export function settings(over: Partial<SettingsForm> = {}): SettingsForm {
  return {
    thresholds: [80, 100],
    quiet_start: "22:00",
    quiet_end: "07:00",
    urgent_through_quiet: true,
    notify_rejected_builds: true,
    start_at_login: false,
    early_warning_days: 3,
    early_warning_margin_hours: 24,
    runaway_factor: 5,
    runaway_min_builds: 10,
    refill_notice: "after_top_threshold",
    ...over,
  };
}
