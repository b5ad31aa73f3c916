import { describe, expect, it } from "vitest";
import type { IpcError } from "../src/bindings/IpcError";
import { FakeBackend } from "./fake-backend";
import { signedOut } from "./fixtures";
import { byTestId, click, mount, settle } from "./helpers";

async function signInScreen(backend = new FakeBackend({ snap: signedOut() })) {
  const m = await mount(backend);
  const server = byTestId<HTMLInputElement>("signin-server");
  const token = byTestId<HTMLInputElement>("signin-token");
  const submit = byTestId<HTMLButtonElement>("signin-submit");
  return { ...m, server, token, submit };
}

describe("sign-in", () => {
  it("has a labelled server field with the default as placeholder and a password token field", async () => {
    const { server, token, submit } = await signInScreen();
    expect(server.placeholder).toBe("http://127.0.0.1:8787");
    expect(token.type).toBe("password");
    expect(document.querySelector(`label[for="${server.id}"]`)!.textContent).toBe("Server URL");
    expect(document.querySelector(`label[for="${token.id}"]`)!.textContent).toBe("Access token");
    expect(submit.type).toBe("submit");
  });

  it("signs in, disabling submit while pending, then shows Usage", async () => {
    const backend = new FakeBackend({ snap: signedOut() });
    const { app, server, token, submit } = await signInScreen(backend);
    server.value = "http://127.0.0.1:8787";
    token.value = "secret-token";
    const release = backend.hold("sign_in");
    submit.click();
    await settle();
    expect(submit.disabled).toBe(true);
    expect(backend.callsOf("sign_in")[0]!.args).toEqual({ server: "http://127.0.0.1:8787", token: "secret-token", name: null });
    submit.click(); // a second click while pending sends nothing
    await settle();
    expect(backend.callsOf("sign_in")).toHaveLength(1);
    release();
    await settle();
    expect(app.currentView()).toBe("usage");
    expect(byTestId("meter-builds-text").textContent).toBe("42 / 100");
    expect(byTestId("nav-usage").getAttribute("aria-current")).toBe("page");
  });

  it.each([
    ["token", { code: "unauthorized", message: "The server refused this token.", field: "token" }],
    ["server", { code: "unreachable", message: "Could not reach the server.", field: "server" }],
    ["server", { code: "invalid", message: "Not a URL.", field: "server" }],
  ] as [string, IpcError][])("puts a %s error next to that field", async (f, err) => {
    const backend = new FakeBackend({ snap: signedOut() });
    backend.signIn = () => err;
    const { server, token, submit } = await signInScreen(backend);
    server.value = "http://127.0.0.1:1";
    token.value = "t";
    await click(submit);
    const slot = byTestId(`signin-error-${f}`);
    expect(slot.hidden).toBe(false);
    expect(slot.textContent).toBe(err.message);
    const input = f === "server" ? server : token;
    expect(input.getAttribute("aria-invalid")).toBe("true");
    expect(input.getAttribute("aria-describedby")).toContain(slot.id);
    expect(input.closest(".field")!.contains(slot)).toBe(true);
    const other = byTestId(`signin-error-${f === "server" ? "token" : "server"}`);
    expect(other.hidden).toBe(true);
    expect(submit.disabled).toBe(false);
  });

  it("shows an error without a field as a form alert, by code not message", async () => {
    const backend = new FakeBackend({ snap: signedOut() });
    backend.signIn = () => ({ code: "keychain", message: "The keychain is locked.", field: null });
    const { server, token, submit } = await signInScreen(backend);
    server.value = "http://127.0.0.1:8787";
    token.value = "t";
    await click(submit);
    const form = byTestId("signin-error-form");
    expect(form.getAttribute("role")).toBe("alert");
    expect(form.textContent).toBe("The keychain is locked.");
    expect(byTestId("signin-error-server").hidden).toBe(true);
    expect(byTestId("signin-error-token").hidden).toBe(true);
  });

  it("asks for empty fields without calling the engine, and clears old errors on resubmit", async () => {
    const backend = new FakeBackend({ snap: signedOut() });
    const { server, token, submit, app } = await signInScreen(backend);
    await click(submit);
    expect(byTestId("signin-error-server").hidden).toBe(false);
    server.value = "http://127.0.0.1:8787";
    await click(submit);
    expect(byTestId("signin-error-server").hidden).toBe(true);
    expect(byTestId("signin-error-token").hidden).toBe(false);
    expect(backend.callsOf("sign_in")).toHaveLength(0);
    token.value = "t";
    await click(submit);
    expect(app.currentView()).toBe("usage");
  });
});
