import { afterEach, describe, expect, it, vi } from "vitest";
import { BUILD_PAGE_SIZE, BUILD_ROW_HEIGHT, SEARCH_DEBOUNCE_MS } from "../src/views/builds";
import { FakeBackend } from "./fake-backend";
import { build, NOW, snapshot } from "./fixtures";
import { allByTestId, byTestId, click, go, mount, settle, type } from "./helpers";

const VIEWPORT = 360;

afterEach(() => {
  vi.useRealTimers();
});

async function openBuilds(backend: FakeBackend) {
  const m = await mount(backend);
  await go("builds");
  const list = byTestId("builds-list");
  Object.defineProperty(list, "clientHeight", { value: VIEWPORT, configurable: true });
  return { ...m, list };
}

const queries = (b: FakeBackend) => b.callsOf("builds").map((c) => c.args);

async function scrollTo(list: HTMLElement, top: number): Promise<void> {
  list.scrollTop = top;
  list.dispatchEvent(new Event("scroll"));
  await settle();
}

function lazy(total: number) {
  return { total, at: (i: number) => build(i) };
}

describe("builds", () => {
  it("is empty with no builds", async () => {
    await openBuilds(new FakeBackend({ builds: [] }));
    expect(byTestId("builds-total").textContent).toBe("0 builds");
    expect(byTestId("builds-empty").hidden).toBe(false);
    expect(byTestId("builds-empty").textContent).toBe("No builds yet.");
    expect(allByTestId("build-row")).toHaveLength(0);
    expect(byTestId("history-gaps").hidden).toBe(true);
  });

  it("lists builds with their fields and fills the app filter", async () => {
    const builds = Array.from({ length: 30 }, (_, i) => build(i));
    await openBuilds(new FakeBackend({ builds }));
    expect(byTestId("builds-total").textContent).toBe("30 builds");
    const rows = allByTestId("build-row");
    expect(rows.length).toBeLessThan(30); // in view, plus overscan below: not all
    expect(rows[0]!.textContent).toContain("app-0");
    expect(rows[0]!.textContent).toContain("1.0.0");
    expect(rows[0]!.textContent).toContain("Rejected");
    expect(rows[0]!.textContent).toContain("limit reached");
    expect(rows[0]!.getAttribute("aria-posinset")).toBe("1");
    expect(rows[0]!.getAttribute("aria-setsize")).toBe("30");
    const apps = [...byTestId<HTMLSelectElement>("builds-app").options].map((o) => o.value);
    expect(apps).toEqual(["", "app-0", "app-1", "app-2", "app-3", "app-4"]);
    expect(byTestId("builds-list").getAttribute("tabindex")).toBe("0");
    expect(byTestId("builds-list").getAttribute("aria-label")).toBe("Build history");
    await scrollTo(byTestId("builds-list"), 30 * BUILD_ROW_HEIGHT);
    expect(allByTestId("build-row").at(-1)!.dataset.key).toBe("b:29");
  });

  it("filters by app, status and dates, from offset 0", async () => {
    const builds = Array.from({ length: 30 }, (_, i) => build(i));
    const backend = new FakeBackend({ builds });
    await openBuilds(backend);
    const app = byTestId<HTMLSelectElement>("builds-app");
    app.value = "app-3";
    app.dispatchEvent(new Event("change"));
    await settle();
    expect(queries(backend).at(-1)).toMatchObject({ app: "app-3", offset: 0 });
    expect(allByTestId("build-row").length).toBe(6);
    const status = byTestId<HTMLSelectElement>("builds-status");
    status.value = "overage";
    status.dispatchEvent(new Event("change"));
    await settle();
    expect(queries(backend).at(-1)).toMatchObject({ app: "app-3", status: "overage" });
    expect(byTestId("builds-total").textContent).toBe("1 build");
    status.value = "rejected";
    status.dispatchEvent(new Event("change"));
    await settle();
    expect(byTestId("builds-total").textContent).toBe("0 builds");
    expect(byTestId("builds-empty").textContent).toBe("No builds match these filters.");

    const since = byTestId<HTMLInputElement>("builds-since");
    const until = byTestId<HTMLInputElement>("builds-until");
    since.value = "2026-11-10";
    until.value = "2026-11-01";
    const n = backend.callsOf("builds").length;
    until.dispatchEvent(new Event("change"));
    await settle();
    expect(byTestId("builds-error-until").textContent).toBe("Until is before since.");
    expect(backend.callsOf("builds").length).toBe(n);
    until.value = "2026-11-30";
    until.dispatchEvent(new Event("change"));
    await settle();
    expect(byTestId("builds-error-until").hidden).toBe(true);
    expect(queries(backend).at(-1)).toMatchObject({ since: "2026-11-10", until: "2026-11-30" });
  });

  it("debounces the search box", async () => {
    vi.useFakeTimers();
    const builds = Array.from({ length: 30 }, (_, i) => build(i));
    const backend = new FakeBackend({ builds });
    await openBuilds(backend);
    const n = backend.callsOf("builds").length;
    const search = byTestId<HTMLInputElement>("builds-search");
    expect(document.querySelector(`label[for="${search.id}"]`)!.textContent).toBe("Search");
    for (const text of ["1", "1.", "1.0.2", "1.0.25"]) {
      type(search, text);
      await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS / 2);
    }
    expect(backend.callsOf("builds").length).toBe(n);
    await vi.advanceTimersByTimeAsync(SEARCH_DEBOUNCE_MS);
    await settle();
    expect(backend.callsOf("builds").length).toBe(n + 1);
    expect(queries(backend).at(-1)).toMatchObject({ search: "1.0.25", offset: 0 });
    expect(allByTestId("build-row").map((r) => r.dataset.key)).toEqual(["b:25"]);
  });

  it("pages through 100,000 builds by offset with a bounded DOM", async () => {
    const backend = new FakeBackend({ builds: lazy(100_000) });
    const { list } = await openBuilds(backend);
    expect(byTestId("builds-total").textContent).toBe("100,000 builds");
    expect(queries(backend).map((q) => [q.offset, q.limit])).toEqual([[0, BUILD_PAGE_SIZE]]);
    const bounded = Math.ceil(480 / BUILD_ROW_HEIGHT) + 2 * 6 + 2;
    expect(allByTestId("build-row").length).toBeLessThanOrEqual(bounded);
    expect(list.querySelector(".vlist-spacer")!.getAttribute("style")).toContain(`${100_000 * BUILD_ROW_HEIGHT}px`);

    // The end: one request, for the last page, and the last row shows.
    await scrollTo(list, 100_000 * BUILD_ROW_HEIGHT - VIEWPORT);
    expect(queries(backend).map((q) => q.offset)).toEqual([0, 99_800]);
    const rows = allByTestId("build-row");
    expect(rows.length).toBeLessThanOrEqual(bounded);
    const last = rows.find((r) => r.getAttribute("aria-posinset") === "100000")!;
    expect(last.textContent).toContain("1.0.99999");
    expect(last.style.getPropertyValue("--y")).toBe(`${99_999 * BUILD_ROW_HEIGHT}px`);

    // The middle, then a quick scrub: only pages in view are asked for, one page each.
    await scrollTo(list, 50_000 * BUILD_ROW_HEIGHT);
    // Rows 49,994–50,016 are drawn: they straddle two pages.
    expect(queries(backend).slice(2).map((q) => q.offset)).toEqual([49_800, 50_000]);
    for (let i = 0; i < 40; i++) await scrollTo(list, (i * 2500 + 7) * BUILD_ROW_HEIGHT);
    for (const q of queries(backend)) {
      expect(q.offset % BUILD_PAGE_SIZE).toBe(0);
      expect(q.limit).toBe(BUILD_PAGE_SIZE);
    }
    expect(backend.callsOf("builds").length).toBeLessThan(100);
    expect(allByTestId("build-row").length).toBeLessThanOrEqual(bounded);
    expect(document.querySelectorAll(".vrow").length).toBeLessThanOrEqual(bounded);
  });

  it("scrolls with the keyboard", async () => {
    const backend = new FakeBackend({ builds: lazy(100_000) });
    const { list } = await openBuilds(backend);
    const key = async (k: string) => {
      list.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true, cancelable: true }));
      await settle();
    };
    await key("ArrowDown");
    expect(list.scrollTop).toBe(BUILD_ROW_HEIGHT);
    await key("PageDown");
    expect(list.scrollTop).toBe(BUILD_ROW_HEIGHT + VIEWPORT - BUILD_ROW_HEIGHT);
    await key("End");
    expect(list.scrollTop).toBe(100_000 * BUILD_ROW_HEIGHT - VIEWPORT);
    expect(allByTestId("build-row").some((r) => r.getAttribute("aria-posinset") === "100000")).toBe(true);
    await key("Home");
    expect(list.scrollTop).toBe(0);
    expect(allByTestId("build-row")[0]!.getAttribute("aria-posinset")).toBe("1");
  });

  it("refreshes only the page in view on a live snapshot", async () => {
    const backend = new FakeBackend({ builds: lazy(100_000) });
    const { list } = await openBuilds(backend);
    await scrollTo(list, 70_000 * BUILD_ROW_HEIGHT);
    const n = backend.callsOf("builds").length;
    backend.builds = lazy(100_001);
    backend.emit("snapshot", snapshot({ now: NOW + 30 }));
    await settle();
    const fresh = queries(backend).slice(n);
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.length).toBeLessThanOrEqual(2);
    for (const q of fresh) expect(Math.abs(q.offset - 70_000)).toBeLessThanOrEqual(BUILD_PAGE_SIZE);
    expect(byTestId("builds-total").textContent).toBe("100,001 builds");
    expect(backend.callsOf("build_apps").length).toBe(2);
  });

  it("shows an alert with Retry when a page fails, then the rows", async () => {
    const builds = Array.from({ length: 10 }, (_, i) => build(i));
    const backend = new FakeBackend({ builds });
    backend.fail("builds", { code: "storage", message: "The cache could not be read.", field: null });
    await openBuilds(backend);
    const alert = document.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("Couldn't load builds");
    expect(alert.textContent).toContain("The cache could not be read.");
    backend.heal("builds");
    await click(byTestId("retry", alert));
    expect(document.querySelector('[role="alert"]')).toBeNull();
    expect(allByTestId("build-row")).toHaveLength(10);
  });

  it("notes history gaps", async () => {
    const backend = new FakeBackend({ snap: snapshot({ history_gaps: 2 }) });
    await openBuilds(backend);
    expect(byTestId("history-gaps").hidden).toBe(false);
    expect(byTestId("history-gaps").textContent).toContain("2 gaps");
    backend.emit("snapshot", snapshot({ history_gaps: 0, now: NOW + 1 }));
    await settle();
    expect(byTestId("history-gaps").hidden).toBe(true);
  });
});
