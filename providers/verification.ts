/**
 * Verification: facts computed from the database after the other steps, and invariants that fail the update.
 *
 *   create  runs the verification SQL (a pg_temp function: nothing persists), journals the outcome, and fails with a
 *           message naming the organizations when an invariant is violated. The facts become outputs.
 *   read    keeps the recorded facts (verification is a point-in-time statement, re-made on every change upstream).
 *   diff    an update when what it verifies changed: the SQL, the model, or any upstream fingerprint.
 *   update  as create.
 *   delete  nothing to remove.
 */
import * as pulumi from "@pulumi/pulumi";

export interface VerificationArgs {
  databaseUrl: pulumi.Input<string>;
  model: pulumi.Input<"unified" | "multi">;
  sql: pulumi.Input<string>;
  sqlSha256: pulumi.Input<string>;
  /** Fingerprints of what this verifies (functions, backfill run, policies...): a change re-runs verification. */
  upstream: pulumi.Input<Record<string, pulumi.Input<string | number | boolean | undefined>>>;
}

async function verify(inputs: any): Promise<any> {
  const { Client } = require("pg");
  const c = new Client({ connectionString: inputs.databaseUrl, application_name: "guardian-credits:verification" });
  await c.connect();
  try {
    await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await c.query(inputs.sql);
    const r = (await c.query("SELECT pg_temp.guardian_verify() AS v")).rows[0].v;
    await c.query("COMMIT");
    const violations: string[] = r.violations ?? [];
    await c.query(
      `DO $j$ BEGIN IF to_regclass('guardian.migration_journal') IS NOT NULL THEN
         INSERT INTO guardian.migration_journal (step, object_name, details)
         VALUES ('verification', '${inputs.model}', jsonb_build_object('violations', ${violations.length}));
       END IF; END $j$`,
    );
    for (const [k, v] of Object.entries(r.facts ?? {})) console.log(`verification (${inputs.model}): ${k} = ${JSON.stringify(v)}`);
    if (violations.length) {
      throw new Error(`verification of the ${inputs.model} model FAILED (${violations.length} invariant(s) violated):\n  - ${violations.join("\n  - ")}`);
    }
    return { ...inputs, facts: r.facts, violations, verifiedAt: new Date().toISOString() };
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export const verificationProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any) {
    const changed: string[] = [];
    if (olds.model !== news.model) changed.push("model");
    if (olds.sqlSha256 !== news.sqlSha256) changed.push("sql");
    if (JSON.stringify(olds.upstream ?? {}) !== JSON.stringify(news.upstream ?? {})) changed.push("upstream");
    if (olds.databaseUrl !== news.databaseUrl) changed.push("databaseUrl"); // re-verified with the new credential
    return { changes: changed.length > 0, replaces: [], detailedDiff: Object.fromEntries(changed.map((k) => [k, { kind: "update", inputDiff: true }])) as any };
  },
  async create(inputs: any) {
    return { id: `verification:${inputs.model}`, outs: await verify(inputs) };
  },
  async update(_id: string, _olds: any, news: any) {
    return { outs: await verify(news) };
  },
  async read(id: string, props: any) {
    return { id, props };
  },
  async delete() {},
};

/** Type token: pulumi-nodejs:dynamic/guardian:Verification. */
export class VerificationRun extends pulumi.dynamic.Resource {
  declare readonly facts: pulumi.Output<Record<string, any>>;
  declare readonly violations: pulumi.Output<string[]>;
  declare readonly verifiedAt: pulumi.Output<string>;

  constructor(name: string, args: VerificationArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      verificationProvider,
      name,
      { ...args, databaseUrl: pulumi.secret(args.databaseUrl), facts: undefined, violations: undefined, verifiedAt: undefined },
      { ...opts, additionalSecretOutputs: ["databaseUrl"] },
      "guardian",
      "Verification",
    );
  }
}
