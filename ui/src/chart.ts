// Usage over time as inline SVG: one line per metric as a percentage of its limit, so metrics with
// different limits share one chart and the limit is one line at 100%.
import type { UsageSeries } from "./bindings/UsageSeries";
import { h, s } from "./dom";
import { count, unixDateTime } from "./format";

const W = 640;
const H = 220;
const PAD = { left: 44, right: 12, top: 12, bottom: 28 };

export interface ChartRange {
  /** Unix seconds. */
  start: number;
  end: number;
}

/** Where a metric's pace leads: a straight dashed line from its reading now to the period's end. */
export interface Projection {
  metric: string;
  from: { at: number; used: number };
  to: { at: number; used: number };
}

function pct(used: number, limit: number): number {
  return limit > 0 ? (used / limit) * 100 : 0;
}

/** The x range: the billing period when known, else the points' own span. */
function xRange(series: UsageSeries[], range: ChartRange | null): ChartRange {
  let start = range?.start ?? Infinity;
  let end = range?.end ?? -Infinity;
  for (const x of series) {
    for (const p of x.points) {
      if (p.at < start) start = p.at;
      if (p.at > end) end = p.at;
    }
  }
  if (!Number.isFinite(start)) start = 0;
  if (!(end > start)) end = start + 3600;
  return { start, end };
}

export function summary(series: UsageSeries[]): string {
  return series
    .map((x) => {
      const last = x.points[x.points.length - 1];
      const used = last ? last.used : 0;
      return `${x.label}: ${count(used)} of ${count(x.limit)}`;
    })
    .join("; ");
}

export function usageChart(series: UsageSeries[], range: ChartRange | null, projected: Projection[] = []): HTMLElement {
  const drawn = series.filter((x) => x.points.length > 0);
  const xr = xRange(drawn, range);
  const limitOf = (metric: string) => series.find((x) => x.metric === metric)?.limit ?? 0;
  let maxPct = 100;
  for (const x of drawn) for (const p of x.points) maxPct = Math.max(maxPct, pct(p.used, x.limit));
  for (const p of projected) maxPct = Math.max(maxPct, pct(p.to.used, limitOf(p.metric)));
  const yMax = Math.ceil(maxPct / 25) * 25;
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const X = (at: number) => PAD.left + ((at - xr.start) / (xr.end - xr.start)) * iw;
  const Y = (p: number) => PAD.top + ih - (p / yMax) * ih;
  const f = (n: number) => n.toFixed(1);

  const titleId = `chart-title-${Math.random().toString(36).slice(2, 8)}`;
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": titleId,
    preserveAspectRatio: "none",
    "data-testid": "usage-chart",
  });
  svg.appendChild(s("title", { id: titleId }, `Usage over time as a percentage of each limit. ${summary(series)}`));

  // Grid and y labels every 25% (every 50% or 100% past 200%).
  const step = yMax > 400 ? 100 : yMax > 200 ? 50 : 25;
  for (let p = 0; p <= yMax; p += step) {
    svg.appendChild(s("line", { class: "chart-grid", x1: PAD.left, x2: W - PAD.right, y1: f(Y(p)), y2: f(Y(p)) }));
    svg.appendChild(s("text", { class: "chart-label", x: PAD.left - 6, y: f(Y(p) + 4), "text-anchor": "end" }, `${p}%`));
  }
  svg.appendChild(s("line", { class: "chart-limit", x1: PAD.left, x2: W - PAD.right, y1: f(Y(100)), y2: f(Y(100)), "data-testid": "chart-limit" }));
  svg.appendChild(s("text", { class: "chart-label chart-limit-label", x: W - PAD.right, y: f(Y(100) - 4), "text-anchor": "end" }, "limit"));
  svg.appendChild(s("text", { class: "chart-label", x: PAD.left, y: H - 8, "text-anchor": "start" }, unixDateTime(xr.start).slice(0, 10)));
  svg.appendChild(s("text", { class: "chart-label", x: W - PAD.right, y: H - 8, "text-anchor": "end" }, unixDateTime(xr.end).slice(0, 10)));

  series.forEach((x, i) => {
    if (x.points.length === 0) return;
    // Usage only changes at a point, so draw steps: flat until the next point.
    const pts: string[] = [];
    x.points.forEach((p, j) => {
      const y = f(Y(pct(p.used, x.limit)));
      if (j > 0) pts.push(`${f(X(p.at))},${f(Y(pct(x.points[j - 1]!.used, x.limit)))}`);
      pts.push(`${f(X(p.at))},${y}`);
    });
    const line = s(
      "polyline",
      { class: `chart-line series-${i % 6}`, points: pts.join(" "), "data-testid": `chart-series-${x.metric}` },
      s("title", null, `${x.label}: ${count(x.points[x.points.length - 1]!.used)} of ${count(x.limit)}`),
    );
    svg.appendChild(line);
    const ahead = projected.find((p) => p.metric === x.metric);
    if (ahead && x.limit > 0) {
      svg.appendChild(
        s(
          "line",
          {
            class: `chart-projection series-${i % 6}`,
            x1: f(X(ahead.from.at)),
            y1: f(Y(pct(ahead.from.used, x.limit))),
            x2: f(X(ahead.to.at)),
            y2: f(Y(pct(ahead.to.used, x.limit))),
            "data-testid": `chart-projection-${x.metric}`,
          },
          s("title", null, `${x.label} at this pace: ${count(ahead.to.used)} of ${count(x.limit)} by the period's end`),
        ),
      );
    }
  });

  const legend = h(
    "ul",
    { class: "chart-legend" },
    series.map((x, i) => {
      const last = x.points[x.points.length - 1];
      return h(
        "li",
        null,
        h("span", { class: `swatch series-${i % 6}`, "aria-hidden": "true" }),
        `${x.label} — ${last ? count(last.used) : "no data"} of ${count(x.limit)}${x.limit > 0 ? "" : " (no limit)"}`,
      );
    }),
  );
  return h("figure", { class: "chart-figure" }, svg, legend);
}
