import { App } from "../src/app";
import { createApi } from "../src/ipc";
import { FakeBackend } from "./fake-backend";

/** Let every queued promise run (works with fake timers too). */
export async function settle(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

export async function mount(backend = new FakeBackend(), hash = ""): Promise<{ app: App; root: HTMLElement; backend: FakeBackend }> {
  document.body.replaceChildren();
  const root = document.createElement("div");
  root.id = "app";
  document.body.appendChild(root);
  const app = new App(root, createApi(backend), hash);
  await app.start();
  await settle();
  return { app, root, backend };
}

export function byTestId<E extends Element = HTMLElement>(id: string, root: ParentNode = document): E {
  const el = root.querySelector<E>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`no element with data-testid=${id}`);
  return el;
}

export function allByTestId<E extends Element = HTMLElement>(id: string, root: ParentNode = document): E[] {
  return [...root.querySelectorAll<E>(`[data-testid="${id}"]`)];
}

export function queryTestId<E extends Element = HTMLElement>(id: string, root: ParentNode = document): E | null {
  return root.querySelector<E>(`[data-testid="${id}"]`);
}

export async function click(el: Element): Promise<void> {
  (el as HTMLElement).click();
  await settle();
}

export function type(input: HTMLInputElement, value: string): void {
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

export async function submit(form: HTMLFormElement): Promise<void> {
  form.dispatchEvent(new Event("submit", { bubbles: true, cancelable: true }));
  await settle();
}

export async function go(view: "usage" | "builds" | "notifications" | "settings"): Promise<void> {
  await click(byTestId(`nav-${view}`));
}
