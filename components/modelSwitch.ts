/**
 * ModelSwitch: the credit model of the stack, and what moving into it does, in one place. Declared in both models, so
 * `pulumi preview` of `multi -> unified` or `unified -> multi` reads as one update of this resource, with its
 * ordered steps, besides the resources that carry them out (docs/architecture.md, "The model switch").
 *
 * The order the steps happen in is the engine's: every create and update runs first, in dependency order
 * (dependsOn), and only then are the resources the program no longer declares deleted, in reverse dependency order.
 * So, rolling back, the Rollback resource (a create) restores v1 and switches every organization back BEFORE the engine
 * deletes the multi-only resources (CreditFunctions' caller-rules helper, the Backfill's allocation function, trigger
 * and run record), whose deletes then find v2, the batch function and the trigger already gone and tolerate it.
 */
import * as pulumi from "@pulumi/pulumi";
import type { CreditModel } from "../lib/config";
import { ModelSwitchRecord } from "../providers/modelSwitch";

/** What moving into each model does, in order, naming the resource that does each step. */
export const SWITCH_STEPS: Record<CreditModel, string[]> = {
  multi: [
    "go/no-go: shape, prices, policies, locks (program time, nothing written)",
    "backup: snapshot + export, restore verified (backup-*)",
    "schema: additive columns and the guardian schema (credit-schema-*)",
    "catalogue, audit, margins, tenancy: foreign policies dropped with the program's own (catalogue-*, audit-*, margins-*, tenant-policies-*)",
    "functions: v2 and the batch switched in after their trial calls answer (credit-functions-*)",
    "backfill: allocation rule and trigger, then every organization flipped in batches (backfill-*)",
    "verification: facts, trial calls, isolation as real users (verification-run)",
  ],
  unified: [
    "go/no-go (program time, nothing written)",
    "rollback 1: the allocation trigger dropped (rollback-run)",
    "rollback 2: organizations switched back in batches by credit_model alone, no unified value recomputed or changed (checked per batch), while v2 serves (rollback-run)",
    "rollback 3: no organization left multi, then in one transaction v1 restored (body and COMMENT as backed up, search_path pinned; grants but anon/PUBLIC; backed-up prices) or the safe function, v2 and the batch dropped (rollback-run)",
    "verification (unified): trial calls, isolation, the switch's record, v1's search_path (verification-run)",
    "then the engine deletes what the unified program no longer declares: credit-functions-* (the caller-rules helper) and backfill-* (allocation function, trigger, run record)",
  ],
};

export interface ModelSwitchArgs {
  /** The model of this update (guardian:creditModel). */
  model: CreditModel;
}

export class ModelSwitch extends pulumi.ComponentResource {
  /** The model the stack is in after this update. */
  readonly model: pulumi.Output<CreditModel>;
  /** What moving into it does, in order. */
  readonly steps: pulumi.Output<string[]>;

  constructor(name: string, args: ModelSwitchArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:ModelSwitch", name, {}, opts);
    const record = new ModelSwitchRecord(`${name}-record`, { model: args.model, steps: SWITCH_STEPS[args.model] }, { parent: this });
    this.model = record.model;
    this.steps = record.steps;
    this.registerOutputs({ model: this.model, steps: this.steps });
  }
}
