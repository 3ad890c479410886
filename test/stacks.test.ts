/**
 * The stack settings per environment (Pulumi.<stack>.yaml) validate as the program validates them, and say what
 * issue 7 asks: secrets set with `pulumi config set --secret`, a mandatory margin gate in prod, smaller backfill
 * batches with a pause in prod.
 */
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../lib/config";

const ROOT = path.resolve(__dirname, "..");

function stackFile(stack: string) {
  const text = fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8");
  const doc = yaml.load(text) as { config: Record<string, unknown> };
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc.config)) {
    expect(k, `Pulumi.${stack}.yaml: ${k}`).toMatch(/^guardian:/);
    raw[k.slice("guardian:".length)] = v;
  }
  return { text, raw };
}

describe("stack settings per environment", () => {
  const example = "postgres://postgres@127.0.0.1:5432/guardian_example";

  it.each(["dev", "staging", "prod"])("Pulumi.%s.yaml validates with lib/config.ts (no unknown or bad key)", (stack) => {
    const { raw } = stackFile(stack);
    expect(() => parseConfig({ databaseUrl: example, ...raw })).not.toThrow();
  });

  it.each(["staging", "prod"])("Pulumi.%s.yaml keeps the connection string out of plain text and shows how to set it", (stack) => {
    const { text, raw } = stackFile(stack);
    expect(raw.databaseUrl).toBeUndefined();
    expect(text).toContain(`pulumi config set --secret guardian:databaseUrl`);
    expect(text).toContain(`--stack ${stack}`);
  });

  it("prod makes the margin gate mandatory and backfills in smaller, paused batches", () => {
    const prod = parseConfig({ databaseUrl: example, ...stackFile("prod").raw });
    const staging = parseConfig({ databaseUrl: example, ...stackFile("staging").raw });
    const dev = parseConfig({ databaseUrl: example, ...stackFile("dev").raw });
    expect(prod.marginGate).toBe("mandatory");
    expect(staging.marginGate).toBe("advisory");
    expect(prod.backfill.batchSize).toBeLessThan(staging.backfill.batchSize);
    expect(prod.backfill.batchSize).toBeLessThan(dev.backfill.batchSize);
    expect(prod.backfill.pauseMs).toBeGreaterThan(0);
    expect(prod.creditModel).toBe("multi");
  });
});
