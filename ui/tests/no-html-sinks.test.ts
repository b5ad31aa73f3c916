// Every string the server sends is rendered as text: no source file may reach an HTML parser.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(__dirname, "..", "src");
const SINKS = [/\binnerHTML\b/, /\bouterHTML\b/, /\binsertAdjacentHTML\b/, /\bdocument\.write(ln)?\b/, /\bcreateContextualFragment\b/, /\bDOMParser\b/, /\bsrcdoc\b/, /\beval\s*\(/, /\bnew\s+Function\s*\(/];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|js|html)$/.test(name) ? [p] : [];
  });
}

describe("no HTML sinks", () => {
  it("finds the sources", () => {
    expect(files(SRC).length).toBeGreaterThan(10);
  });

  it("ui/src and index.html never use innerHTML, outerHTML, insertAdjacentHTML, document.write or eval", () => {
    const offenders: string[] = [];
    for (const f of [...files(SRC), join(__dirname, "..", "index.html")]) {
      readFileSync(f, "utf8")
        .split("\n")
        .forEach((line, i) => {
          for (const re of SINKS) if (re.test(line)) offenders.push(`${relative(join(__dirname, ".."), f)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });

  it("index.html has no inline script or style", () => {
    const html = readFileSync(join(__dirname, "..", "index.html"), "utf8");
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style\b/);
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/https?:\/\//);
  });
});
