// The window in a plain browser against the tests' fake backend (`npm run dev`, then open
// /dev/preview.html?view=builds&offline=1&signedout=1&over=1). Not part of the build.
import "../src/style.css";
import { App } from "../src/app";
import type { View } from "../src/bindings/View";
import { createApi } from "../src/ipc";
import { FakeBackend } from "../tests/fake-backend";
import { build, history, meter, notification, NOW, signedOut, snapshot } from "../tests/fixtures";

const q = new URLSearchParams(location.search);
const backend = new FakeBackend({
  snap: q.has("signedout")
    ? signedOut()
    : snapshot({
        connection: q.has("offline") ? "offline" : "connected",
        connection_detail: q.has("offline") ? "connection refused" : null,
        history_gaps: q.has("gaps") ? 1 : 0,
        meters: q.has("over")
          ? [meter({ used: 130, percent: 130, level: "over", note: "over limit" }), meter({ metric: "applications", label: "Applications", used: 4, limit: 5, percent: 80, level: "warning" })]
          : undefined,
      }),
  history: history(),
  builds: { total: 100_000, at: (i) => build(i) },
  notifications: Array.from({ length: 80 }, (_, i) =>
    notification(i + 1, i % 3 === 1 ? { state: "suppressed", reason: "quiet hours" } : i % 5 === 0 ? { urgent: true } : {}),
  ),
});
backend.signIn = (f) => (f.token === "bad" ? { code: "unauthorized", message: "The server refused this token.", field: "token" } : null);
const app = new App(document.getElementById("app")!, createApi(backend));
void app.start().then(() => {
  const v = q.get("view");
  if (v) app.show(v as View);
  const row = q.get("row");
  if (row) {
    const list = document.querySelector<HTMLElement>('[data-testid="builds-list"]')!;
    setTimeout(() => {
      list.scrollTop = Number(row) * 36;
      list.focus();
    }, 100);
  }
});
Object.assign(window, { backend, app, NOW });
