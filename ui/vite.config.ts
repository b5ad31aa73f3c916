/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// Tauri loads the built files from ui/dist (tauri.conf.json at the top of the repository: frontendDist "ui/dist").
export default defineConfig({
  base: "./",
  clearScreen: false,
  server: { port: 1420, strictPort: true },
  build: {
    outDir: "dist",
    target: "es2022",
    sourcemap: false,
    // Keep every asset a file: the CSP allows only 'self', and data: URLs are not 'self'.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.ts"],
  },
});
