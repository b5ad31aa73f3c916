// A hostile server's strings show as text everywhere, and never become elements.
import { describe, expect, it } from "vitest";
import { FakeBackend } from "./fake-backend";
import { build, meter, notification, snapshot, XSS } from "./fixtures";
import { allByTestId, byTestId, go, mount } from "./helpers";

function hostile(): FakeBackend {
  return new FakeBackend({
    snap: snapshot({
      account: { id: 1, name: XSS, email: XSS, server: XSS, plan: XSS, hard_limit: true },
      meters: [meter({ metric: XSS, label: XSS, note: XSS })],
      period: { start: XSS, end: XSS },
      connection: "offline",
      connection_detail: XSS,
      history_gaps: 1,
    }),
    history: [{ metric: XSS, label: XSS, limit: 10, points: [{ at: 1, used: 2 }] }],
    builds: [build(1, { app: XSS, version: XSS, commit: XSS, reason: XSS, created_at: XSS })],
    notifications: [notification(1, { title: XSS, body: XSS, reason: XSS, why: `Not shown: ${XSS}.` })],
  });
}

function noInjectedElements(): void {
  expect(document.querySelectorAll("img, script, iframe, object, embed")).toHaveLength(0);
  for (const el of document.querySelectorAll("*")) for (const a of el.getAttributeNames()) expect(a.startsWith("on"), `${el.tagName} ${a}`).toBe(false);
}

describe("XSS", () => {
  it("renders hostile strings as text in the shell and Usage", async () => {
    await mount(hostile());
    expect(byTestId("account").textContent).toContain(XSS);
    expect(byTestId("offline-banner").textContent).toContain(XSS);
    expect(byTestId("connection-status").textContent).toContain(XSS);
    expect(byTestId(`meter-${XSS}`).textContent).toContain(XSS);
    expect(byTestId("billing-period").textContent).toContain(XSS);
    expect(byTestId("usage-chart").textContent).toContain(XSS);
    noInjectedElements();
  });

  it("renders hostile strings as text in Builds", async () => {
    await mount(hostile());
    await go("builds");
    const row = allByTestId("build-row")[0]!;
    expect(row.querySelector(".c-app")!.textContent).toBe(XSS);
    expect(row.querySelector(".c-reason")!.textContent).toBe(XSS);
    expect(row.textContent).toContain(XSS);
    const option = [...byTestId<HTMLSelectElement>("builds-app").options].find((o) => o.value === XSS);
    expect(option!.textContent).toBe(XSS);
    noInjectedElements();
  });

  it("renders hostile strings as text in Notifications and Settings", async () => {
    await mount(hostile());
    await go("notifications");
    const row = allByTestId("notification-row")[0]!;
    expect(row.querySelector(".n-title")!.textContent).toBe(XSS);
    expect(row.querySelector(".n-body")!.textContent).toBe(XSS);
    expect(row.textContent).toContain(`Not shown: ${XSS}.`);
    noInjectedElements();
    await go("settings");
    expect(document.querySelector(".signout")!.textContent).toContain(`Signed in as ${XSS}`);
    noInjectedElements();
  });

  it("renders a hostile error message as text", async () => {
    const backend = hostile();
    backend.fail("notifications", { code: "internal", message: XSS, field: null });
    await mount(backend);
    await go("notifications");
    expect(document.querySelector('[role="alert"]')!.textContent).toContain(XSS);
    noInjectedElements();
  });
});
