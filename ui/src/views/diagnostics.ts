// Diagnostics: `quotabell doctor`'s checks (keychain, notification daemon, tray host, each
// account's server, token and clock, the cache, the engine), each with its fix. The window opens
// here when the desktop has no tray to show the icon in.
import type { Finding } from "../bindings/Finding";
import type { IpcError } from "../bindings/IpcError";
import type { Verdict } from "../bindings/Verdict";
import { errorState } from "../components/error-state";
import { h, replace } from "../dom";
import type { ViewContext, ViewInstance } from "./view";

const VERDICT_TEXT: Record<Verdict, string> = { ok: "OK", warn: "Warning", fail: "Failed" };

export function diagnosticsView(ctx: ViewContext): ViewInstance {
  const body = h("div", { class: "diagnostics-body", "aria-live": "polite" });
  const again = h("button", { type: "button", class: "btn", "data-testid": "diagnostics-run", on: { click: () => void run() } }, "Check again");
  const el = h(
    "section",
    { class: "diagnostics", "aria-labelledby": "diagnostics-title" },
    h("h2", { id: "diagnostics-title" }, "Diagnostics"),
    h("p", { class: "muted" }, "What Quotabell needs from this desktop and from each account's server. The same checks run with `quotabell doctor`."),
    body,
    h("div", { class: "actions" }, again),
  );
  let destroyed = false;

  function row(f: Finding): HTMLElement {
    return h(
      "li",
      { class: `finding verdict-${f.verdict}`, "data-testid": `finding-${f.check.replace(/\s+/g, "-")}`, "data-verdict": f.verdict },
      h("span", { class: "finding-verdict" }, VERDICT_TEXT[f.verdict]),
      h("span", { class: "finding-check" }, f.check),
      h("span", { class: "finding-detail" }, f.detail),
      f.fix ? h("span", { class: "finding-fix" }, `Fix: ${f.fix}`) : null,
    );
  }

  async function run(): Promise<void> {
    again.disabled = true;
    replace(body, h("p", { class: "loading", role: "status" }, "Checking…"));
    try {
      const findings = await ctx.api.call({ call: "diagnose" });
      if (destroyed) return;
      const failed = findings.filter((f) => f.verdict === "fail").length;
      replace(
        body,
        h("p", { class: failed ? "notice" : "muted", "data-testid": "diagnostics-summary", role: failed ? "alert" : null }, failed ? `${failed} ${failed === 1 ? "check fails" : "checks fail"}.` : "Everything Quotabell needs is in place."),
        h("ul", { class: "findings", "data-testid": "findings" }, findings.map(row)),
      );
    } catch (e) {
      if (!destroyed) replace(body, errorState(e as IpcError, () => void run(), "Couldn't run the checks"));
    } finally {
      again.disabled = false;
    }
  }

  void run();
  return {
    el,
    destroy() {
      destroyed = true;
    },
  };
}
