import * as pulumi from "@pulumi/pulumi";
import { loadSql, sha256 } from "../lib/sql";
import { RollbackRun } from "../providers/rollback";
import { connection, type GuardianContext } from "./sqlFile";

export interface RollbackArgs {
  ctx: GuardianContext;
  /** Organizations switched per transaction. Default: guardian:backfill.rollbackBatchSize (5,000). */
  batchSize: number;
  dependsOn?: pulumi.Resource[];
}

/**
 * Back to the unified model (guardian:creditModel = unified): v1 restored from the latest verified backup (body,
 * signature, result and COMMENT byte for byte, search_path pinned unless guardian:rollback.function = verbatim), and
 * every organization switched back without a recompute: its unified columns were kept current while multi was
 * applied, so nothing the application wrote is lost and the switch changes no unified value. Nothing deleted.
 */
export class Rollback extends pulumi.ComponentResource {
  public readonly rolledBack: pulumi.Output<boolean>;
  public readonly backupId: pulumi.Output<string>;
  /** Organizations switched back to the unified model (credit_model only; sql/rollback/03_switch_batch.sql). */
  public readonly orgsSwitched: pulumi.Output<number>;
  /** Unified values (plan_name, total_credits, credits_remaining, cycle_end_date) the switch changed: 0, or it refuses. */
  public readonly unifiedValuesChanged: pulumi.Output<number>;
  public readonly durationMs: pulumi.Output<number>;
  public readonly v1DefinitionMd5: pulumi.Output<string>;
  /** Checked in each switch's transaction and before v1 took over: no unified value changed, no organization left multi. */
  public readonly unifiedValuesKept: pulumi.Output<boolean>;
  /** v1's search_path was pinned (ending with pg_temp); false only for guardian:rollback.function = verbatim or safe. */
  public readonly v1SearchPathPinned: pulumi.Output<boolean>;
  /** credit_actions rows whose backed-up price was put back. */
  public readonly pricesRestored: pulumi.Output<number>;
  /** "v1" (the backup's, pinned), "verbatim" (the backup's, unpinned) or "safe" (guardian:rollback.function). */
  public readonly functionRestored: pulumi.Output<string>;
  /** What the restored v1 does wrong (lib/v1Behaviour.ts), empty for the safe function. */
  public readonly v1Weaknesses: pulumi.Output<string[]>;

  constructor(name: string, args: RollbackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Rollback", name, {}, opts);
    const files = {
      stopAllocation: loadSql("rollback/01_stop_allocation.sql"),
      lockBatch: loadSql("rollback/02_lock_batch.sql"),
      switchBatch: loadSql("rollback/03_switch_batch.sql"),
      restoreV1: loadSql("rollback/04_restore_v1.sql"),
      checkSwitch: loadSql("rollback/05_check_switch.sql"),
      pinV1: loadSql("rollback/06_pin_v1.sql"),
      safeV1: loadSql("rollback/safe_v1.sql"),
    };
    const run = new RollbackRun(
      `${name}-run`,
      {
        ...connection(args.ctx),
        sql: {
          stopAllocation: files.stopAllocation.text,
          lockBatch: files.lockBatch.text,
          switchBatch: files.switchBatch.text,
          restoreV1: files.restoreV1.text,
          checkSwitch: files.checkSwitch.text,
          pinV1: files.pinV1.text,
          safeV1: files.safeV1.text,
        },
        rollbackFunction: args.ctx.config.rollback.function,
        sqlSha256: sha256(
          Object.values(files)
            .map((f) => f.sha256)
            .join(""),
        ),
        batchSize: args.batchSize,
        lockTimeoutMs: args.ctx.config.ddl.lockTimeoutMs,
        retries: args.ctx.config.ddl.retries,
      },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.rolledBack = run.rolledBack;
    this.backupId = run.backupId;
    this.orgsSwitched = run.orgsSwitched;
    this.unifiedValuesChanged = run.unifiedValuesChanged;
    this.durationMs = run.durationMs;
    this.v1DefinitionMd5 = run.v1DefinitionMd5;
    this.unifiedValuesKept = run.unifiedValuesKept;
    this.v1SearchPathPinned = run.v1SearchPathPinned;
    this.pricesRestored = run.pricesRestored;
    this.functionRestored = run.functionRestored;
    this.v1Weaknesses = run.v1Weaknesses;
    this.registerOutputs({
      unifiedValuesKept: this.unifiedValuesKept,
      v1SearchPathPinned: this.v1SearchPathPinned,
      unifiedValuesChanged: this.unifiedValuesChanged,
      pricesRestored: this.pricesRestored,
      functionRestored: this.functionRestored,
      v1Weaknesses: this.v1Weaknesses,
      rolledBack: this.rolledBack,
      backupId: this.backupId,
      orgsSwitched: this.orgsSwitched,
      durationMs: this.durationMs,
      v1DefinitionMd5: this.v1DefinitionMd5,
    });
  }
}
