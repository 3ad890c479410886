/**
 * The folders say what the code is (docs/architecture.md), and the imports keep them honest:
 *
 *   index.ts, components/, providers/, policies/   the Pulumi program and its policy pack
 *   lib/                                           what the program runs (scripts and operations may use it too)
 *   operations/                                    operator tooling: rollback, report, rehearse, seed, export, as APIs
 *   scripts/                                       thin command lines over operations/
 *   harness/                                       what bench/ and test/ share
 *   bench/, test/                                  benchmarks and tests
 *
 * Each rule below is one arrow that must not exist. The walk reads every relative import (static, dynamic and
 * require) of every TypeScript file in the tree.
 */
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..", "..");
const SKIP = new Set(["node_modules", ".git", "bench/results"]);

function tsFiles(dir = ""): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (SKIP.has(rel) || SKIP.has(e.name) || e.name.startsWith(".")) continue;
    if (e.isDirectory()) out.push(...tsFiles(rel));
    else if (/\.m?ts$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(rel);
  }
  return out;
}

/** file -> the files (relative to the root) it imports with a relative specifier. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of tsFiles()) {
    const text = fs.readFileSync(path.join(ROOT, f), "utf8");
    const specs = [...text.matchAll(/(?:from|import|require)\s*\(?\s*"(\.{1,2}\/[^"]*)"/g)].map((m) => m[1]);
    graph.set(
      f,
      specs.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(f), s))),
    );
  }
  return graph;
}

/** The area a file belongs to, by its first folder (or "program" for the program's entry point). */
function area(f: string): string {
  if (f === "index.ts") return "program";
  const top = f.split("/")[0];
  if (["components", "providers"].includes(top)) return "program";
  if (top === "policies") return f.startsWith("policies/test/") ? "test" : "program";
  return top.includes(".") ? "root" : top;
}

const FORBIDDEN: [from: string, to: string, why: string][] = [
  ["program", "operations", "the program never runs operator tooling"],
  ["program", "scripts", "the program never runs a command line"],
  ["program", "harness", "the program never runs test or bench code"],
  ["program", "test", "the program never runs test code"],
  ["program", "bench", "the program never runs bench code"],
  ["lib", "operations", "lib/ is what the program runs: it needs nothing of the tooling"],
  ["lib", "scripts", "lib/ needs no command line"],
  ["lib", "harness", "lib/ needs no harness"],
  ["lib", "test", "lib/ needs no test code"],
  ["lib", "bench", "lib/ needs no bench code"],
  ["operations", "scripts", "an operation is an API; the command line calls it, not the other way"],
  ["operations", "test", "an operation needs no test code"],
  ["operations", "bench", "an operation needs no bench code"],
  ["bench", "test", "bench and tests share harness/, never each other"],
  ["test", "bench", "bench and tests share harness/, never each other"],
  ["harness", "test", "the harness is shared: it imports neither side"],
  ["harness", "bench", "the harness is shared: it imports neither side"],
];

describe("the folders say what the code is", () => {
  const graph = importGraph();

  it("reads the whole tree (a walk that found nothing would pass every rule)", () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get("index.ts")?.some((t) => t.startsWith("components/"))).toBe(true);
  });

  it.each(FORBIDDEN)("%s does not import %s (%s)", (from, to) => {
    const arrows = [...graph].flatMap(([f, targets]) => (area(f) === from ? targets.filter((t) => area(t) === to).map((t) => `${f} -> ${t}`) : []));
    expect(arrows).toEqual([]);
  });

  it("every file in lib/ is run by the program (reachable from index.ts, components/, providers/ or policies/)", () => {
    const start = [...graph.keys()].filter((f) => area(f) === "program");
    const seen = new Set<string>();
    const resolve = (t: string) => [`${t}.ts`, `${t}/index.ts`, t].find((c) => graph.has(c));
    const stack = [...start];
    while (stack.length) {
      const f = stack.pop()!;
      if (seen.has(f)) continue;
      seen.add(f);
      for (const t of graph.get(f) ?? []) {
        const r = resolve(t);
        if (r) stack.push(r);
      }
    }
    const tooling = [...graph.keys()].filter((f) => area(f) === "lib" && !seen.has(f));
    expect(tooling, "operator tooling in lib/: move it to operations/ (or harness/ when only bench and tests use it)").toEqual([]);
  });
});
