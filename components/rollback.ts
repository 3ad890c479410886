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
  /** The rollback's one resource; its outputs (providers/rollback.ts ROLLBACK_OUTPUTS) are the component's. */
  public readonly run: RollbackRun;

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
    this.run = new RollbackRun(
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
    this.registerOutputs();
  }
}
