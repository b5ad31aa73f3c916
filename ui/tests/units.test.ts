import { describe, expect, it } from "vitest";
import { h, s } from "../src/dom";
import { bannerText } from "../src/components/banner";
import { isHhMm, isYmd, parseThresholds, plural } from "../src/format";
import { VirtualList } from "../src/virtual-list";
import { snapshot, XSS } from "./fixtures";
import { settle } from "./helpers";

describe("format", () => {
  it("says how long ago in the engine's words, never its own", () => {
    // The engine words "ago" once (crates/core dashboard::ago) for the tray, the CLI and here.
    const text = bannerText(snapshot({ connection: "offline", synced_ago: "3 h ago" }));
    expect(text).toMatch(/\(3 h ago\)$/);
    expect(bannerText(snapshot({ connection: "offline", last_synced_at: null, synced_ago: null }))).toBe("Offline — never synced");
  });

  it("parses thresholds and checks times and dates", () => {
    expect(parseThresholds("80, 100")).toEqual([80, 100]);
    expect(parseThresholds("50 75% 90")).toEqual([50, 75, 90]);
    expect(parseThresholds("")).toEqual([]);
    expect(parseThresholds("80, x")).toBeNull();
    expect(parseThresholds("8.5")).toBeNull();
    expect(isHhMm("07:30")).toBe(true);
    expect(isHhMm("24:00")).toBe(false);
    expect(isYmd("2026-11-01")).toBe(true);
    expect(isYmd("2026-13-01")).toBe(false);
    expect(plural(1, "build")).toBe("1 build");
    expect(plural(100000, "build")).toBe("100,000 builds");
  });
});

describe("dom", () => {
  it("makes text nodes of strings, never markup", () => {
    const el = h("p", { class: "x", "data-testid": XSS }, XSS, 3, null, [" a", false]);
    expect(el.textContent).toBe(`${XSS}3 a`);
    expect(el.children).toHaveLength(0);
    expect(el.getAttribute("data-testid")).toBe(XSS);
  });

  it("refuses inline handlers and style attributes", () => {
    expect(() => h("div", { onclick: "alert(1)" })).toThrow();
    expect(() => h("div", { style: "color: red" })).toThrow();
    expect(() => s("svg", { onload: "alert(1)" })).toThrow();
  });

  it("sets listeners and properties", () => {
    let clicked = 0;
    const b = h("button", { disabled: true, on: { click: () => clicked++ } });
    expect(b.disabled).toBe(true);
    b.disabled = false;
    b.click();
    expect(clicked).toBe(1);
    expect(h("input", { value: "v", checked: true }).checked).toBe(true);
  });
});

describe("virtual list", () => {
  it("keeps a bounded number of pages and refetches evicted ones", async () => {
    const asked: number[] = [];
    const list = new VirtualList<number>({
      label: "n",
      rowHeight: 10,
      pageSize: 10,
      maxPages: 3,
      overscan: 0,
      fallbackHeight: 50,
      fetchPage: async (offset, limit) => {
        asked.push(offset);
        return { total: 1000, rows: Array.from({ length: limit }, (_, i) => offset + i) };
      },
      renderRow: (n) => h("div", null, String(n)),
    });
    list.reset();
    await settle();
    for (const top of [0, 1000, 2000, 3000, 4000, 0]) {
      list.el.scrollTop = top;
      list.render();
      await settle();
    }
    expect(asked).toEqual([0, 100, 200, 300, 400, 0]);
    expect(list.el.textContent).toContain("0");
    expect(list.renderedRange()).toEqual([0, 5]);
  });

  it("refresh during a load waits for it and then refetches once", async () => {
    let calls = 0;
    let release: (() => void) | null = null;
    const list = new VirtualList<number>({
      label: "n",
      rowHeight: 10,
      pageSize: 100,
      fallbackHeight: 50,
      fetchPage: (offset, limit) => {
        calls++;
        return new Promise((r) => (release = () => r({ total: 100, rows: Array.from({ length: limit }, (_, i) => offset + i) })));
      },
      renderRow: (n) => h("div", null, String(n)),
    });
    list.reset();
    list.refresh();
    list.refresh();
    list.refresh();
    expect(calls).toBe(1);
    release!();
    await settle();
    expect(calls).toBe(2);
    release!();
    await settle();
    expect(calls).toBe(2);
    expect(list.getTotal()).toBe(100);
  });
});
