// A windowed list over a paged source: fixed row height, only the rows in view (plus a few) in
// the DOM, pages fetched by offset as they come into view and a bounded number kept.
import { h } from "./dom";

export interface Page<T> {
  total: number;
  rows: T[];
}

export interface VirtualListOptions<T> {
  label: string;
  testid?: string;
  rowHeight: number;
  pageSize: number;
  fetchPage(offset: number, limit: number): Promise<Page<T>>;
  renderRow(row: T, index: number): HTMLElement;
  /** Called whenever the total is known or changes. */
  onTotal?(total: number): void;
  /** A page failed (`err`), or all pages in view loaded again (`null`). */
  onError?(err: unknown): void;
  /** Rows drawn beyond each edge of the viewport. */
  overscan?: number;
  /** Pages kept in memory at most. */
  maxPages?: number;
  /** Requests in flight at most. */
  concurrency?: number;
  /** Viewport height to assume before layout (jsdom has none). */
  fallbackHeight?: number;
}

export class VirtualList<T> {
  /** The scroll viewport: a focusable region; arrow keys, Page Up/Down, Home and End scroll it. */
  readonly el: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly o: Required<Omit<VirtualListOptions<T>, "onTotal" | "onError" | "testid">> &
    Pick<VirtualListOptions<T>, "onTotal" | "onError">;
  private total: number | null = null;
  private cache = new Map<number, T[]>();
  /** Pages from before a refresh, drawn until fresh ones arrive (no flash of placeholders). */
  private stale = new Map<number, T[]>();
  private inflight = new Set<number>();
  private wanted: number[] = [];
  private generation = 0;
  private refreshQueued = false;
  private failed = false;
  private drawn = new Map<number, { row: T | null; el: HTMLElement }>();
  private destroyed = false;
  private resize: ResizeObserver | null = null;

  constructor(opts: VirtualListOptions<T>) {
    this.o = { overscan: 6, maxPages: 12, concurrency: 2, fallbackHeight: 480, ...opts };
    this.spacer = h("div", { class: "vlist-spacer" });
    this.el = h(
      "div",
      {
        class: "vlist",
        tabindex: "0",
        role: "list",
        "aria-label": opts.label,
        "data-testid": opts.testid,
        on: { scroll: () => this.render(), keydown: (e) => this.onKey(e as KeyboardEvent) },
      },
      this.spacer,
    );
    this.el.style.setProperty("--row-h", `${this.o.rowHeight}px`);
    if (typeof ResizeObserver !== "undefined") {
      this.resize = new ResizeObserver(() => this.render());
      this.resize.observe(this.el);
    }
  }

  /** Start over (new query): forget every page, go to the top and load the first page. */
  reset(): void {
    this.generation += 1;
    this.cache.clear();
    this.stale.clear();
    this.inflight.clear();
    this.wanted = [];
    this.refreshQueued = false;
    this.total = null;
    this.el.scrollTop = 0;
    this.clearRows();
    this.setSpacer(0);
    this.render();
  }

  /** The data changed underneath: fetch the pages in view again, keep the rest out of memory. */
  refresh(): void {
    if (this.inflight.size > 0) {
      // A load is under way; one more refresh when it ends covers everything until then.
      this.refreshQueued = true;
      return;
    }
    this.failed = false;
    this.generation += 1;
    this.stale = this.cache;
    this.cache = new Map();
    this.render();
  }

  /** Try the pages in view again after a failure. */
  retry(): void {
    this.failed = false;
    this.render();
  }

  getTotal(): number | null {
    return this.total;
  }

  /** Indices of the rows in the DOM now (for tests and keyboard handling). */
  renderedRange(): [number, number] | null {
    const keys = [...this.drawn.keys()];
    return keys.length ? [Math.min(...keys), Math.max(...keys)] : null;
  }

  scrollToIndex(index: number): void {
    this.el.scrollTop = Math.max(0, index * this.o.rowHeight);
    this.render();
  }

  destroy(): void {
    this.destroyed = true;
    this.generation += 1;
    this.resize?.disconnect();
  }

  private viewportHeight(): number {
    return this.el.clientHeight || this.o.fallbackHeight;
  }

  private setSpacer(total: number): void {
    this.spacer.style.height = `${total * this.o.rowHeight}px`;
  }

  private onKey(e: KeyboardEvent): void {
    const rh = this.o.rowHeight;
    const page = Math.max(rh, this.viewportHeight() - rh);
    const max = (this.total ?? 0) * rh;
    let top = this.el.scrollTop;
    switch (e.key) {
      case "ArrowDown":
        top += rh;
        break;
      case "ArrowUp":
        top -= rh;
        break;
      case "PageDown":
        top += page;
        break;
      case "PageUp":
        top -= page;
        break;
      case "Home":
        top = 0;
        break;
      case "End":
        top = max;
        break;
      default:
        return;
    }
    e.preventDefault();
    this.el.scrollTop = Math.max(0, Math.min(top, Math.max(0, max - this.viewportHeight())));
    this.render();
  }

  private clearRows(): void {
    for (const { el } of this.drawn.values()) el.remove();
    this.drawn.clear();
  }

  private rowAt(index: number): T | null {
    const p = Math.floor(index / this.o.pageSize);
    const rows = this.cache.get(p) ?? this.stale.get(p);
    return rows?.[index - p * this.o.pageSize] ?? null;
  }

  /** Draw the rows in view and ask for the pages they need. */
  render(): void {
    if (this.destroyed) return;
    const { rowHeight: rh, pageSize: ps, overscan } = this.o;
    if (this.total === null) {
      // Nothing known yet: load the page at the current scroll position to learn the total.
      const first = Math.floor(this.el.scrollTop / rh);
      this.request([Math.floor(first / ps)]);
      return;
    }
    const total = this.total;
    const height = this.viewportHeight();
    const maxTop = Math.max(0, total * rh - height);
    const top = Math.min(this.el.scrollTop, maxTop);
    const first = Math.max(0, Math.floor(top / rh) - overscan);
    const last = Math.min(total - 1, Math.ceil((top + height) / rh) + overscan);

    for (const [i, d] of this.drawn) {
      if (i < first || i > last) {
        d.el.remove();
        this.drawn.delete(i);
      }
    }
    const needed = new Set<number>();
    for (let i = first; i <= last; i++) {
      const p = Math.floor(i / ps);
      if (!this.cache.has(p)) needed.add(p);
      const row = this.rowAt(i);
      const cur = this.drawn.get(i);
      if (cur && cur.row === row) continue;
      const el = row === null ? this.placeholder() : this.o.renderRow(row, i);
      el.classList.add("vrow");
      el.setAttribute("role", "listitem");
      el.setAttribute("aria-setsize", String(total));
      el.setAttribute("aria-posinset", String(i + 1));
      el.style.setProperty("--y", `${i * rh}px`);
      if (cur) cur.el.replaceWith(el);
      else this.spacer.appendChild(el);
      this.drawn.set(i, { row, el });
    }
    this.request([...needed]);
  }

  private placeholder(): HTMLElement {
    return h("div", { class: "vrow-placeholder", "aria-busy": "true" }, "Loading…");
  }

  private request(pages: number[]): void {
    // Only what is in view now: pages scrolled past while a request ran are never fetched.
    this.wanted = pages;
    this.pump();
  }

  private pump(): void {
    if (this.failed) return;
    while (this.inflight.size < this.o.concurrency) {
      const p = this.wanted.find((w) => !this.inflight.has(w) && !this.cache.has(w));
      if (p === undefined) return;
      this.load(p);
    }
  }

  private load(page: number): void {
    const gen = this.generation;
    this.inflight.add(page);
    const ps = this.o.pageSize;
    this.o.fetchPage(page * ps, ps).then(
      (res) => {
        if (gen !== this.generation || this.destroyed) return;
        this.inflight.delete(page);
        this.cache.set(page, res.rows);
        this.stale.delete(page);
        this.evict(page);
        const changed = this.total !== res.total;
        if (changed) {
          this.total = res.total;
          this.setSpacer(res.total);
          this.o.onTotal?.(res.total);
        }
        if (this.failed) this.failed = false;
        this.o.onError?.(null);
        this.render();
        this.settled();
      },
      (err: unknown) => {
        if (gen !== this.generation || this.destroyed) return;
        this.inflight.delete(page);
        this.failed = true;
        this.o.onError?.(err);
        this.settled();
      },
    );
  }

  private settled(): void {
    if (this.inflight.size > 0) {
      this.pump();
      return;
    }
    if (this.refreshQueued && !this.failed) {
      this.refreshQueued = false;
      this.refresh();
    } else {
      this.pump();
    }
  }

  /** Keep at most `maxPages`, dropping those farthest from the page just loaded. */
  private evict(near: number): void {
    const drop = (m: Map<number, T[]>, keep: number) => {
      if (m.size <= keep) return;
      const far = [...m.keys()].sort((a, b) => Math.abs(b - near) - Math.abs(a - near));
      for (const p of far.slice(0, m.size - keep)) m.delete(p);
    };
    drop(this.cache, this.o.maxPages);
    drop(this.stale, this.o.maxPages);
  }
}
