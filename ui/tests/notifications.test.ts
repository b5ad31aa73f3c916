import { describe, expect, it } from "vitest";
import { NOTIFICATION_PAGE_SIZE } from "../src/views/notifications";
import { FakeBackend } from "./fake-backend";
import { NOW, notification, snapshot } from "./fixtures";
import { allByTestId, byTestId, click, go, mount, settle } from "./helpers";

const pages = (b: FakeBackend) => b.callsOf("notifications").map((c) => c.args);

describe("notifications", () => {
  it("is empty with no notifications", async () => {
    await mount(new FakeBackend());
    await go("notifications");
    expect(byTestId("notifications-total").textContent).toBe("0 notifications");
    expect(byTestId("notifications-empty").textContent).toBe("No notifications yet.");
    expect(allByTestId("notification-row")).toHaveLength(0);
    expect(byTestId("notifications-more").hidden).toBe(true);
  });

  it("shows shown and suppressed entries with state and reason, newest first", async () => {
    const notifications = [
      notification(1, { title: "Builds over the limit", urgent: true }),
      notification(2, { title: "Builds at 80%", state: "suppressed", reason: "quiet hours", why: "Not shown: quiet hours." }),
      notification(3, { title: "Build rejected", kind: "build_rejected", state: "digested", reason: "more than 8 in a minute" }),
    ];
    await mount(new FakeBackend({ notifications }));
    await go("notifications");
    const rows = allByTestId("notification-row");
    expect(rows.map((r) => r.querySelector(".n-title")!.textContent)).toEqual(["Builds over the limit", "Builds at 80%", "Build rejected"]);
    expect(rows[0]!.textContent).toContain("Shown");
    expect(rows[0]!.textContent).toContain("Urgent");
    expect(rows[0]!.textContent).toContain("5 min ago");
    expect(rows[1]!.dataset.state).toBe("suppressed");
    expect(rows[1]!.textContent).toContain("Suppressed");
    expect(byTestId("notification-why", rows[1]!).textContent).toBe("Not shown: quiet hours.");
    expect(rows[2]!.textContent).toContain("In a digest");
    // What each is about, in words, not the stored name.
    expect(rows[0]!.querySelector(".n-time")!.textContent).toContain("· Quota");
    expect(rows[2]!.querySelector(".n-time")!.textContent).toContain("· Rejected build");
    expect(rows[2]!.textContent).not.toContain("build_rejected");
  });

  it("lists what was not shown, each with why", async () => {
    const notifications = [
      notification(1, { title: "Builds at 90%", state: "suppressed", reason: "90% is not one of your thresholds (80%, 100%)", why: "Not shown: 90% is not one of your thresholds (80%, 100%)." }),
      notification(2, { title: "Builds at 80%", state: "suppressed", reason: "paused", why: "Not shown: paused." }),
      notification(3, { title: "Builds at 80%" }),
    ];
    const backend = new FakeBackend({ notifications });
    await mount(backend);
    await go("notifications");
    expect(allByTestId("notification-row")).toHaveLength(3);
    const select = byTestId<HTMLSelectElement>("notifications-filter");
    select.value = "not_shown";
    select.dispatchEvent(new Event("change"));
    await settle();
    expect(pages(backend).at(-1)).toEqual({ offset: 0, limit: 50, filter: "not_shown" });
    const rows = allByTestId("notification-row");
    expect(rows).toHaveLength(2);
    expect(byTestId("notifications-total").textContent).toBe("2 decisions not shown as they came");
    expect(allByTestId("notification-why").map((w) => w.textContent)).toEqual([
      "Not shown: 90% is not one of your thresholds (80%, 100%).",
      "Not shown: paused.",
    ]);
  });

  it("pages by offset with Show older", async () => {
    const notifications = Array.from({ length: 120 }, (_, i) => notification(i + 1));
    const backend = new FakeBackend({ notifications });
    await mount(backend);
    await go("notifications");
    expect(allByTestId("notification-row")).toHaveLength(NOTIFICATION_PAGE_SIZE);
    expect(byTestId("notifications-total").textContent).toBe("120 notifications");
    await click(byTestId("notifications-more"));
    await click(byTestId("notifications-more"));
    expect(allByTestId("notification-row")).toHaveLength(120);
    expect(byTestId("notifications-more").hidden).toBe(true);
    expect(pages(backend)).toEqual([
      { offset: 0, limit: 50, filter: "all" },
      { offset: 50, limit: 50, filter: "all" },
      { offset: 100, limit: 50, filter: "all" },
    ]);
  });

  it("reloads from the top on a live snapshot", async () => {
    const backend = new FakeBackend({ notifications: [notification(1)] });
    await mount(backend);
    await go("notifications");
    backend.notifications = [notification(0, { title: "New one" }), notification(1)];
    backend.emit("snapshot", snapshot({ now: NOW + 1 }));
    await settle();
    expect(allByTestId("notification-row")[0]!.textContent).toContain("New one");
    expect(pages(backend).at(-1)).toEqual({ offset: 0, limit: 50, filter: "all" });
  });

  it("shows an alert with Retry when loading fails", async () => {
    const backend = new FakeBackend({ notifications: [notification(1)] });
    backend.fail("notifications", { code: "storage", message: "The cache could not be read.", field: null }, true);
    await mount(backend);
    await go("notifications");
    const alert = document.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain("The cache could not be read.");
    await click(byTestId("retry", alert));
    expect(document.querySelector('[role="alert"]')).toBeNull();
    expect(allByTestId("notification-row")).toHaveLength(1);
  });
});
