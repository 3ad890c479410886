/** The ModelSwitch record's diff: an update exactly when the model (or its steps) change, never a replacement. */
import { describe, expect, it } from "vitest";
import { SWITCH_STEPS } from "../../components/modelSwitch";
import { modelSwitchProvider } from "../../providers/modelSwitch";

describe("ModelSwitch (providers/modelSwitch.ts)", () => {
  const multi = { model: "multi" as const, steps: SWITCH_STEPS.multi };
  const unified = { model: "unified" as const, steps: SWITCH_STEPS.unified };

  it("a switch between models is one update naming model and steps", async () => {
    const d = await modelSwitchProvider.diff!("model-switch", multi, unified);
    expect(d).toEqual({
      changes: true,
      replaces: [],
      detailedDiff: { model: { kind: "update", inputDiff: true }, steps: { kind: "update", inputDiff: true } },
    });
  });

  it("the same model is no change", async () => {
    expect(await modelSwitchProvider.diff!("model-switch", multi, { ...multi, steps: [...SWITCH_STEPS.multi] })).toMatchObject({ changes: false });
  });

  it("the unified steps put the rollback before the engine's deletes, and say so", () => {
    const last = SWITCH_STEPS.unified[SWITCH_STEPS.unified.length - 1];
    expect(last).toMatch(/^then the engine deletes/);
    expect(SWITCH_STEPS.unified.findIndex((s) => s.startsWith("rollback 3"))).toBeLessThan(SWITCH_STEPS.unified.length - 1);
  });
});
