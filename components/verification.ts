import * as pulumi from "@pulumi/pulumi";
import { loadSql } from "../lib/sql";
import { ISOLATION_TABLES } from "../lib/isolation";
import { VerificationRun } from "../providers/verification";
import { connection, type GuardianContext, shapeOf } from "./sqlFile";
import type { CreditModel } from "../lib/config";

export interface VerificationArgs {
  ctx: GuardianContext;
  model: CreditModel;
  /** Fingerprints of what is verified; any change re-runs the verification. */
  upstream: Record<string, pulumi.Input<string | number | boolean | undefined>>;
  /** Every step being verified: verification runs last. */
  dependsOn: pulumi.Resource[];
}

/** Facts computed from the database after every other step; a violated invariant fails the update. */
export class Verification extends pulumi.ComponentResource {
  /** The verification's one resource; its outputs (providers/verification.ts VERIFICATION_OUTPUTS) are the component's. */
  public readonly run: VerificationRun;

  constructor(name: string, args: VerificationArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Verification", name, {}, opts);
    const f = loadSql(`verification/${args.model}.sql`, shapeOf(args.ctx));
    this.run = new VerificationRun(
      `${name}-run`,
      {
        ...connection(args.ctx),
        model: args.model,
        sql: f.text,
        sqlSha256: f.sha256,
        upstream: args.upstream,
        trialCallsSql: loadSql("verification/trial_calls.sql").text,
        profileRoleColumn: shapeOf(args.ctx).profileRoleColumn,
        isolationTables: ISOLATION_TABLES,
      },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.registerOutputs();
  }
}
