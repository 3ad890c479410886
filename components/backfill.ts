import * as pulumi from "@pulumi/pulumi";
import type { BackfillPlan } from "../lib/backfillPlan";
import { loadSql, sha256 } from "../lib/sql";
import { BackfillRun } from "../providers/backfill";
import type { Backup } from "./backup";
import { connection, functionProbe, type GuardianContext, sqlFileObject } from "./sqlFile";

export type { BackfillPlan };

export interface BackfillArgs {
  ctx: GuardianContext;
  /** The verified backup this backfill stands on (its restore check must pass first). */
  backup: Backup;
  /** What the backfill will change, measured when the program ran (shown in preview). */
  plan: BackfillPlan;
  /** Steps that must be in place first: the credit schema, the catalogue, and v2 (which serves both models). */
  dependsOn: pulumi.Resource[];
}

/**
 * The online backfill: the allocation rule as a SQL function, the trigger that migrates rows written while (and
 * after) it runs, and the batched run that flips every organization to the multi model.
 */
export class Backfill extends pulumi.ComponentResource {
  /** The plan's organizations to migrate per allocation rule, measured when the program ran. */
  public readonly orgsToMigrate: Record<string, number>;
  /** The batched run; its outputs (providers/backfill.ts BACKFILL_OUTPUTS) are the component's. */
  public readonly run: BackfillRun;

  constructor(name: string, args: BackfillArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Backfill", name, {}, opts);
    const { ctx } = args;
    const allocate = sqlFileObject(
      `${name}-allocate-pools`,
      ctx,
      {
        file: "backfill/01_allocate_pools.sql",
        kind: "function",
        objectName: "guardian.allocate_pools(text,integer,integer)",
        probeSql: functionProbe("guardian.allocate_pools(text,integer,integer)"),
        meta: { securityDefiner: false, searchPath: "pg_catalog, pg_temp", executeRoles: [] },
      },
      { parent: this, dependsOn: args.dependsOn },
    );
    const trigger = sqlFileObject(
      `${name}-allocation-trigger`,
      ctx,
      {
        file: "backfill/02_allocation_trigger.sql",
        kind: "trigger",
        objectName: "public.organization_credits/guardian_allocate_on_write",
        probeSql: `SELECT md5(pg_get_triggerdef(t.oid) || pg_get_functiondef('guardian.allocate_on_write()'::regprocedure)) AS fingerprint
                     FROM pg_trigger t WHERE t.tgname = 'guardian_allocate_on_write' AND t.tgrelid = 'public.organization_credits'::regclass`,
        dropSql: "DROP TRIGGER IF EXISTS guardian_allocate_on_write ON public.organization_credits",
      },
      { parent: this, dependsOn: [allocate] },
    );
    const batch = loadSql("backfill/batch.sql");
    const c = ctx.config;
    this.orgsToMigrate = args.plan.orgsToMigrate;
    this.run = new BackfillRun(
      `${name}-run`,
      {
        ...connection(ctx),
        batchSql: batch.text,
        batchSqlSha256: batch.sha256,
        batchSize: c.backfill.batchSize,
        pauseMs: c.backfill.pauseMs,
        rulesSha256: sha256(JSON.stringify({ plans: c.plans, split: c.split })),
        split: c.split,
        backupId: args.backup.snapshot.backupId,
        restoreVerified: args.backup.restoreCheck.restoreVerified,
        requireVerifiedBackup: true,
        pendingOrgs: args.plan.pendingOrgs,
        orgsToMigrate: args.plan.orgsToMigrate,
        splitPlanNames: args.plan.splitPlanNames,
        lockTimeoutMs: c.ddl.lockTimeoutMs,
        retries: c.ddl.retries,
      },
      { parent: this, dependsOn: [trigger, allocate, args.backup.restoreCheck, ...args.dependsOn] },
    );
    this.registerOutputs({ orgsToMigrate: this.orgsToMigrate });
  }
}
