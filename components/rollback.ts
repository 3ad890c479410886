import * as pulumi from "@pulumi/pulumi";
import { loadSql, sha256 } from "../lib/sql";
import { RollbackRun } from "../providers/rollback";
import { connection, type GuardianContext } from "./sqlFile";

export interface RollbackArgs {
  ctx: GuardianContext;
  /** Organizations reconciled per transaction. Default: guardian:backfill.rollbackBatchSize (5,000). */
  batchSize: number;
  dependsOn?: pulumi.Resource[];
}

/**
 * Back to the unified model (guardian:creditModel = unified): v1 restored byte for byte from the latest verified
 * backup, balances reconciled with every consumption since that backup, nothing deleted.
 */
export class Rollback extends pulumi.ComponentResource {
  public readonly rolledBack: pulumi.Output<boolean>;
  public readonly backupId: pulumi.Output<string>;
  public readonly orgsReconciled: pulumi.Output<number>;
  public readonly durationMs: pulumi.Output<number>;
  public readonly v1DefinitionMd5: pulumi.Output<string>;
  /** The reconcile was verified exactly before v1 took over (sql/rollback/05_check_reconcile.sql). */
  public readonly reconcileVerified: pulumi.Output<boolean>;
  /** credit_actions rows whose backed-up price was put back. */
  public readonly pricesRestored: pulumi.Output<number>;
  /** "v1" (the backup's, byte for byte) or "safe" (guardian:rollback.function). */
  public readonly functionRestored: pulumi.Output<string>;
  /** What the restored v1 does wrong (lib/v1.ts), empty for the safe function. */
  public readonly v1Weaknesses: pulumi.Output<string[]>;

  constructor(name: string, args: RollbackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Rollback", name, {}, opts);
    const files = {
      stopAllocation: loadSql("rollback/01_stop_allocation.sql"),
      lockBatch: loadSql("rollback/02_lock_batch.sql"),
      reconcileBatch: loadSql("rollback/03_reconcile_batch.sql"),
      restoreV1: loadSql("rollback/04_restore_v1.sql"),
      checkReconcile: loadSql("rollback/05_check_reconcile.sql"),
      safeV1: loadSql("rollback/safe_v1.sql"),
    };
    const run = new RollbackRun(
      `${name}-run`,
      {
        ...connection(args.ctx),
        sql: {
          stopAllocation: files.stopAllocation.text,
          lockBatch: files.lockBatch.text,
          reconcileBatch: files.reconcileBatch.text,
          restoreV1: files.restoreV1.text,
          checkReconcile: files.checkReconcile.text,
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
    this.orgsReconciled = run.orgsReconciled;
    this.durationMs = run.durationMs;
    this.v1DefinitionMd5 = run.v1DefinitionMd5;
    this.reconcileVerified = run.reconcileVerified;
    this.pricesRestored = run.pricesRestored;
    this.functionRestored = run.functionRestored;
    this.v1Weaknesses = run.v1Weaknesses;
    this.registerOutputs({
      reconcileVerified: this.reconcileVerified,
      pricesRestored: this.pricesRestored,
      functionRestored: this.functionRestored,
      v1Weaknesses: this.v1Weaknesses,
      rolledBack: this.rolledBack,
      backupId: this.backupId,
      orgsReconciled: this.orgsReconciled,
      durationMs: this.durationMs,
      v1DefinitionMd5: this.v1DefinitionMd5,
    });
  }
}
