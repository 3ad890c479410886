/**
 * The order of safety is one plan (lib/applyOrder.ts): every step waits only for steps before it, each names a
 * component that exists, and the program takes its dependsOn from the plan rather than lists of its own.
 */
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { APPLY_ORDER, stepAfter, stepIndex, stepsOf } from "../../lib/applyOrder";
import type { CreditModel } from "../../lib/config";

const ROOT = path.resolve(__dirname, "..", "..");
const MODELS: CreditModel[] = ["multi", "unified"];

describe("the order of safety (lib/applyOrder.ts)", () => {
  for (const model of MODELS) {
    it(`${model}: every step waits only for steps before it, and names each step once`, () => {
      const steps = stepsOf(model);
      expect(new Set(steps).size).toBe(steps.length);
      for (const { step, after } of APPLY_ORDER[model]) {
        for (const a of after) expect(stepIndex(model, a), `${model}: "${step}" waits for "${a}"`).toBeLessThan(stepIndex(model, step));
      }
    });

    it(`${model}: each step names a component class of components/`, () => {
      const sources = fs
        .readdirSync(path.join(ROOT, "components"))
        .map((f) => fs.readFileSync(path.join(ROOT, "components", f), "utf8"))
        .join("\n");
      for (const { component } of APPLY_ORDER[model]) expect(sources).toMatch(new RegExp(`export class ${component} extends pulumi\\.ComponentResource`));
    });
  }

  it("backs up first and verifies last in the multi model; rolls back before verifying in the unified one", () => {
    expect(stepsOf("multi")[0]).toBe("backup");
    expect(stepsOf("multi").at(-1)).toBe("verification");
    expect(stepsOf("unified")).not.toContain("backup");
    expect(stepsOf("unified").slice(-2)).toEqual(["rollback", "verification"]);
    expect(stepAfter("multi", "functions")).toEqual(expect.arrayContaining(["backup", "tenancy"]));
  });

  it("refuses a step the model does not have, naming it", () => {
    expect(() => stepAfter("unified", "backfill")).toThrow(/the unified model has no step "backfill"/);
    expect(() => stepIndex("multi", "rollback")).toThrow(/the multi model has no step "rollback"/);
  });

  it("index.ts takes every component's dependsOn from the plan, with no list of its own", () => {
    const index = fs.readFileSync(path.join(ROOT, "index.ts"), "utf8");
    expect(index).toContain("stepAfter(config.creditModel, step)");
    expect(index).not.toMatch(/dependsOn:\s*\[/);
    for (const model of MODELS) for (const { step } of APPLY_ORDER[model]) expect(index).toMatch(new RegExp(`add\\(\\s*"${step}"`));
  });
});
