import * as pulumi from "@pulumi/pulumi";
import { loadSql, sha256 } from "../lib/sql";
import { RollbackRun } from "../providers/rollback";
import type { GuardianContext } from "./sqlFile";

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

  constructor(name: string, args: RollbackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Rollback", name, {}, opts);
    const files = {
      stopAllocation: loadSql("rollback/01_stop_allocation.sql"),
      lockBatch: loadSql("rollback/02_lock_batch.sql"),
      reconcileBatch: loadSql("rollback/03_reconcile_batch.sql"),
      restoreV1: loadSql("rollback/04_restore_v1.sql"),
    };
    const run = new RollbackRun(
      `${name}-run`,
      {
        databaseUrl: args.ctx.databaseUrl,
        sql: {
          stopAllocation: files.stopAllocation.text,
          lockBatch: files.lockBatch.text,
          reconcileBatch: files.reconcileBatch.text,
          restoreV1: files.restoreV1.text,
        },
        sqlSha256: sha256(Object.values(files).map((f) => f.sha256).join("")),
        batchSize: args.batchSize,
        lockTimeoutMs: args.ctx.config.ddl.lockTimeoutMs,
      },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.rolledBack = run.rolledBack;
    this.backupId = run.backupId;
    this.orgsReconciled = run.orgsReconciled;
    this.durationMs = run.durationMs;
    this.v1DefinitionMd5 = run.v1DefinitionMd5;
    this.registerOutputs({
      rolledBack: this.rolledBack,
      backupId: this.backupId,
      orgsReconciled: this.orgsReconciled,
      durationMs: this.durationMs,
      v1DefinitionMd5: this.v1DefinitionMd5,
    });
  }
}
