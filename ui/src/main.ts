import "./style.css";
import { App } from "./app";
import { createApi, tauriTransport } from "./ipc";

const root = document.getElementById("app");
if (root) void new App(root, createApi(tauriTransport()), window.location.hash).start();
