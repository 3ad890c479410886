/**
 * The order of safety: the one ordered plan of what `pulumi up` applies, per credit model, and what each step waits
 * for. index.ts wires its components' dependsOn from it (so the engine enforces it), the Supabase migration export
 * (operations/export/supabaseMigration.ts) writes its parts in its order, and the test fixtures that apply the SQL
 * without the engine follow it. Each step names only steps before it (test/unit/applyOrder.test.ts).
 *
 *   multi:   backup (restore verified) -> credit schema -> catalogue, audit -> tenancy -> functions (v2 switched in
 *            after trial calls; serves both models) -> backfill (flips each organization atomically) -> margins
 *            -> verification
 *   unified: credit schema -> catalogue, audit -> tenancy -> margins (all kept from multi) -> rollback (organizations
 *            switched back, v1 restored) -> verification; then the engine deletes the multi-only resources
 *            (components/modelSwitch.ts says why that order holds)
 */
import type { CreditModel } from "./config";

export type Step = "backup" | "credit schema" | "catalogue" | "audit" | "tenancy" | "functions" | "backfill" | "margins" | "rollback" | "verification";

export interface PlannedStep {
  step: Step;
  /** The component (components/) that applies it. */
  component: string;
  /** The steps it waits for (its dependsOn). */
  after: readonly Step[];
}

/** Every step of each model, in the order they apply. */
export const APPLY_ORDER: Record<CreditModel, readonly PlannedStep[]> = {
  multi: [
    { step: "backup", component: "Backup", after: [] },
    { step: "credit schema", component: "CreditSchema", after: ["backup"] },
    { step: "catalogue", component: "Catalogue", after: ["credit schema"] },
    { step: "audit", component: "Audit", after: ["credit schema"] },
    { step: "tenancy", component: "TenantPolicies", after: ["credit schema", "audit"] },
    { step: "functions", component: "CreditFunctions", after: ["backup", "credit schema", "catalogue", "audit", "tenancy"] },
    { step: "backfill", component: "Backfill", after: ["credit schema", "catalogue", "functions"] },
    { step: "margins", component: "Margins", after: ["catalogue"] },
    { step: "verification", component: "Verification", after: ["backfill", "functions", "tenancy", "margins", "audit"] },
  ],
  unified: [
    { step: "credit schema", component: "CreditSchema", after: [] },
    { step: "catalogue", component: "Catalogue", after: ["credit schema"] },
    { step: "audit", component: "Audit", after: ["credit schema"] },
    { step: "tenancy", component: "TenantPolicies", after: ["credit schema", "audit"] },
    { step: "margins", component: "Margins", after: ["catalogue"] },
    { step: "rollback", component: "Rollback", after: ["credit schema", "catalogue"] },
    { step: "verification", component: "Verification", after: ["rollback", "tenancy", "margins", "audit"] },
  ],
};

/** The steps of a model, in order. */
export function stepsOf(model: CreditModel): Step[] {
  return APPLY_ORDER[model].map((s) => s.step);
}

/** What `step` waits for in `model`; throws naming the step when the model has no such step. */
export function stepAfter(model: CreditModel, step: Step): readonly Step[] {
  const planned = APPLY_ORDER[model].find((s) => s.step === step);
  if (!planned) throw new Error(`lib/applyOrder.ts: the ${model} model has no step "${step}"`);
  return planned.after;
}

/** Where a step stands in a model's order (for sorting); throws naming the step when the model has no such step. */
export function stepIndex(model: CreditModel, step: Step): number {
  const i = stepsOf(model).indexOf(step);
  if (i < 0) throw new Error(`lib/applyOrder.ts: the ${model} model has no step "${step}"`);
  return i;
}
