import { describe, expect, it } from "vitest";
import { FakeBackend } from "./fake-backend";
import { history, meter, NOW, snapshot } from "./fixtures";
import { allByTestId, byTestId, click, mount, queryTestId, settle } from "./helpers";

describe("usage", () => {
  it("draws one bar per meter with text, percent, level and an accessible progressbar", async () => {
    const snap = snapshot({
      meters: [
        meter({ used: 130, percent: 130, level: "over", note: "over limit", effect: "overage is charged" }),
        meter({ metric: "applications", label: "Applications", used: 4, limit: 5, percent: 80, level: "warning" }),
        meter({ metric: "seats", label: "Seats", used: 1, limit: 10, percent: 10, level: "ok" }),
      ],
    });
    await mount(new FakeBackend({ snap, history: history() }));
    const m = byTestId("meter-builds");
    expect(byTestId("meter-builds-text", m).textContent).toBe("130 / 100");
    expect(m.textContent).toContain("130%");
    expect(byTestId("meter-builds-level").textContent).toBe("Over limit");
    expect(byTestId("meter-builds-note").textContent).toBe("over limit");
    expect(m.classList.contains("level-over")).toBe(true);
    const bar = m.querySelector('[role="progressbar"]')!;
    expect(bar.getAttribute("aria-valuenow")).toBe("130");
    expect(bar.getAttribute("aria-valuemin")).toBe("0");
    expect(bar.getAttribute("aria-valuemax")).toBe("100");
    expect(bar.getAttribute("aria-label")).toBe("Builds");
    expect((bar.firstChild as HTMLElement).style.getPropertyValue("--pct")).toBe("100%");
    expect(byTestId("meter-applications-level").textContent).toBe("Warning");
    expect(byTestId("meter-seats-level").textContent).toBe("OK");
    expect(queryTestId("meter-seats-note")).toBeNull();
    // What the reached limit does, in the engine's words.
    expect(byTestId("meter-builds-effect").textContent).toBe("Overage is charged");
    expect(bar.getAttribute("aria-valuetext")).toBe("130 / 100 (130%) — Over limit, over limit: overage is charged");
    expect(queryTestId("meter-applications-effect")).toBeNull();
  });

  it("shows the period, connection status and last sync relative to the snapshot's now", async () => {
    await mount(new FakeBackend({ history: history() }));
    expect(byTestId("billing-period").textContent).toBe("Billing period: 2026-11-01 – 2026-12-01");
    expect(byTestId("connection-status").textContent).toContain("Connected (live)");
    expect(byTestId("last-synced").textContent).toBe("last synced 2 min ago");
  });

  it("draws the chart: one line per series and the limit line", async () => {
    await mount(new FakeBackend({ history: history() }));
    const chart = byTestId("usage-chart");
    expect(chart.namespaceURI).toBe("http://www.w3.org/2000/svg");
    expect(chart.getAttribute("role")).toBe("img");
    expect(chart.querySelectorAll("polyline")).toHaveLength(2);
    expect(queryTestId("chart-series-builds")).not.toBeNull();
    expect(queryTestId("chart-series-applications")).not.toBeNull();
    expect(queryTestId("chart-limit")).not.toBeNull();
    expect(chart.querySelector("title")!.textContent).toContain("Builds: 42 of 100");
  });

  it("shows the forecast under its meter and draws the projection dashed to the period's end", async () => {
    const pace = { kind: "limit_before_end" as const, per_day: 5, limit_at: NOW + 4 * 86400, at_period_end: 160 };
    const snap = snapshot({
      meters: [meter({ pace, forecast: "At this pace: limit on Nov 27, in about 4 days" }), meter({ metric: "applications", label: "Applications", used: 4, limit: 5, percent: 80, level: "warning" })],
    });
    await mount(new FakeBackend({ snap, history: history() }));
    expect(byTestId("meter-builds-forecast").textContent).toBe("At this pace: limit on Nov 27, in about 4 days");
    expect(queryTestId("meter-applications-forecast")).toBeNull();
    const line = byTestId("chart-projection-builds");
    expect(line.getAttribute("class")).toContain("chart-projection");
    // It starts at the reading now (42%) and ends higher (160%), at the chart's right edge.
    expect(Number(line.getAttribute("y2"))).toBeLessThan(Number(line.getAttribute("y1")));
    expect(Number(line.getAttribute("x2"))).toBeGreaterThan(Number(line.getAttribute("x1")));
    expect(line.querySelector("title")!.textContent).toBe("Builds at this pace: 160 of 100 by the period's end");
    expect(queryTestId("chart-projection-applications")).toBeNull();
    // Without a projection (too little data), no dashed line.
    const none = snapshot({ meters: [meter({ pace: { kind: "not_enough_data", builds: 1, history_secs: 60 }, forecast: "Not enough history yet for a forecast" })] });
    await mount(new FakeBackend({ snap: none, history: history() }));
    expect(queryTestId("chart-projection-builds")).toBeNull();
    expect(byTestId("meter-builds-forecast").textContent).toBe("Not enough history yet for a forecast");
  });

  it("extends the chart from live snapshots without asking for history again", async () => {
    const backend = new FakeBackend({ history: history() });
    await mount(backend);
    const pts = () => byTestId("chart-series-builds").getAttribute("points")!.split(" ").length;
    const before = pts();
    backend.emit("snapshot", snapshot({ meters: [meter({ used: 60, percent: 60 })], now: NOW + 300 }));
    await settle();
    expect(pts()).toBe(before + 2);
    expect(backend.callsOf("usage_history")).toHaveLength(1);
    expect(backend.callsOf("snapshot")).toHaveLength(1);
  });

  it("draws the snapshot's readings when the stored history is still empty", async () => {
    await mount(new FakeBackend({ snap: snapshot(), history: [] }));
    await settle();
    expect(queryTestId("chart-empty")).toBeNull();
    expect(byTestId("chart-series-builds").getAttribute("points")).not.toBe("");
  });

  it("is empty without meters or history", async () => {
    await mount(new FakeBackend({ snap: snapshot({ meters: [], period: null, last_synced_at: null, synced_ago: null }), history: [] }));
    expect(byTestId("meters-empty").textContent).toBe("No usage reported yet.");
    expect(byTestId("chart-empty").textContent).toBe("No usage history yet.");
    expect(byTestId("last-synced").textContent).toBe("never synced");
    expect(queryTestId("usage-chart")).toBeNull();
  });

  it("shows history errors with Retry", async () => {
    const backend = new FakeBackend({ history: history() });
    backend.fail("usage_history", { code: "storage", message: "The cache could not be read.", field: null }, true);
    await mount(backend);
    const alert = document.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("The cache could not be read.");
    expect(allByTestId("meter-builds")).toHaveLength(1); // the meters still show
    await click(byTestId("retry", alert));
    expect(document.querySelector('[role="alert"]')).toBeNull();
    expect(queryTestId("usage-chart")).not.toBeNull();
  });

  it("pauses and resumes notifications", async () => {
    const backend = new FakeBackend({ history: history() });
    await mount(backend);
    await click(byTestId("pause-hour"));
    expect(backend.callsOf("pause")[0]!.args).toEqual("one_hour");
    expect(document.querySelector(".pause")!.textContent).toContain("Notifications paused until");
    await click(byTestId("pause-resume"));
    expect(backend.callsOf("pause")[1]!.args).toEqual("resume");
    expect(queryTestId("pause-hour")).not.toBeNull();
  });
});
