/**
 * CreditFunctions: consume_credits_rpc v2 (replacing v1 in one transaction), consume_credits_batch, and the caller
 * rules they share (guardian.may_consume_for). v2 serves both models, so it goes in before the backfill flips any
 * organization.
 *
 * Deletes: v2's dropSql removes only the v2 signature. Restoring v1 is the Rollback resource's job (from the backup's
 * recorded definition), which runs before these deletes.
 */
import * as pulumi from "@pulumi/pulumi";
import { functionMeta, type FunctionMeta } from "../lib/functionMeta";
import { combinedSha256, loadSql } from "../lib/sql";
import { functionProbe, type GuardianContext, shapeOf, sqlFileObject } from "./sqlFile";

/** One function file: its signature (the object's identity), the role of its child, and how to drop it. */
export interface FunctionSpec {
  role: string;
  file: string;
  signature: string;
  dropSql: string;
}

/** In the order they are applied (tests and the bench apply the same list). */
export const CREDIT_FUNCTIONS: FunctionSpec[] = [
  {
    role: "may-consume-for",
    file: "functions/00_may_consume_for.sql",
    signature: "guardian.may_consume_for(uuid)",
    dropSql: "DROP FUNCTION IF EXISTS guardian.may_consume_for(uuid)",
  },
  {
    // What v2 and the batch share: caller rules, lock (NO_CREDIT_ACCOUNT), key, trial, pool shortfall, debit.
    role: "consume-debit",
    file: "functions/01_consume_debit.sql",
    signature: "guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)",
    dropSql: "DROP FUNCTION IF EXISTS guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)",
  },
  {
    role: "consume-credits-rpc",
    file: "functions/consume_credits_rpc_v2.sql",
    signature: "public.consume_credits_rpc(uuid,text,integer,text)",
    dropSql: "DROP FUNCTION IF EXISTS public.consume_credits_rpc(uuid,text,integer,text)",
  },
  {
    role: "consume-credits-batch",
    file: "functions/consume_credits_batch.sql",
    signature: "public.consume_credits_batch(uuid,jsonb)",
    dropSql: "DROP FUNCTION IF EXISTS public.consume_credits_batch(uuid,jsonb)",
  },
];

/** The policy-pack facts of a function spec, read from its file. */
export function functionSpecMeta(spec: FunctionSpec): FunctionMeta {
  return functionMeta(loadSql(spec.file).text, spec.signature);
}

export interface CreditFunctionsArgs {
  /**
   * The connection string (secret) and the validated config. Required. Only `databaseUrl` and `config.ddl` are used:
   * the functions read the catalogue and credit_model from the database, so they do not change with the config.
   * Needs CreditSchema (columns, guardian tables) and Catalogue: pass them in `opts.dependsOn`.
   */
  ctx: GuardianContext;
}

/** consume_credits_rpc v2, consume_credits_batch and their caller rules, one SqlObject (kind "function") each. */
export class CreditFunctions extends pulumi.ComponentResource {
  /** sha256 of each applied file, keyed by its path under sql/. */
  readonly sqlSha256: pulumi.Output<Record<string, string>>;
  /** One sha256 over all of them (a scalar to pass where a single upstream value is wanted). */
  readonly combinedSqlSha256: pulumi.Output<string>;
  /** The signatures of the functions this component owns, in apply order. */
  readonly functionSignatures: pulumi.Output<string[]>;
  /** securityDefiner, searchPath and executeRoles of each function, keyed by signature (read from the SQL). */
  readonly functionMeta: pulumi.Output<Record<string, FunctionMeta>>;
  /** Fingerprint (definition and ACL) of each function right after it was applied, keyed by signature. */
  readonly appliedFingerprints: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: CreditFunctionsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:CreditFunctions", name, {}, opts);
    const { ctx } = args;
    const metas = CREDIT_FUNCTIONS.map(functionSpecMeta);

    const [helperSpec, debitSpec, ...publicSpecs] = CREDIT_FUNCTIONS;
    // The public functions are installed only if trial calls, made as the application and a member make them, all
    // answer in the installing transaction (sql/verification/trial_calls.sql): a function that would error on this
    // database is never switched in, and v1 keeps serving.
    const trialCalls = loadSql("verification/trial_calls.sql").text;
    const declare = (spec: FunctionSpec, meta: FunctionMeta, dependsOn: pulumi.Resource[], checkSql?: string) =>
      sqlFileObject(
        `${name}-${spec.role}`,
        ctx,
        {
          file: spec.file,
          kind: "function",
          objectName: spec.signature,
          probeSql: functionProbe(spec.signature),
          dropSql: spec.dropSql,
          meta: { ...meta },
          checkSql,
        },
        { parent: this, dependsOn },
      );
    const helper = declare(helperSpec, metas[0], []);
    // The debit keeps the unified columns current while multi is applied; the transaction that installs it brings a
    // database already multi from an earlier version current, once (sql/functions/02_bring_unified_current.sql).
    const debit = declare(debitSpec, metas[1], [helper], loadSql("functions/02_bring_unified_current.sql").text);
    // v2 first, then the batch function (its trial calls also call v2).
    // v2's trial calls also time it (sql/watch/01_baseline.sql): the latency baseline `npm run watch` compares with,
    // recorded before the switch is committed.
    const v2 = declare(publicSpecs[0], metas[2], [helper, debit], `${trialCalls}\n${loadSql("watch/01_baseline.sql").text}`);
    const batch = declare(publicSpecs[1], metas[3], [helper, debit, v2], trialCalls);
    const fns = [v2, batch];
    const objects = [helper, debit, ...fns];

    const shas: Record<string, string> = Object.fromEntries(CREDIT_FUNCTIONS.map((s) => [s.file, loadSql(s.file, shapeOf(ctx)).sha256]));
    this.sqlSha256 = pulumi.output(shas);
    this.combinedSqlSha256 = pulumi.output(combinedSha256(shas));
    this.functionSignatures = pulumi.output(CREDIT_FUNCTIONS.map((s) => s.signature));
    this.functionMeta = pulumi.output(Object.fromEntries(CREDIT_FUNCTIONS.map((s, i) => [s.signature, metas[i]])));
    this.appliedFingerprints = pulumi
      .all(objects.map((o) => o.appliedFingerprint))
      .apply((fps) => Object.fromEntries(CREDIT_FUNCTIONS.map((s, i) => [s.signature, fps[i]])));

    this.registerOutputs({
      sqlSha256: this.sqlSha256,
      combinedSqlSha256: this.combinedSqlSha256,
      functionSignatures: this.functionSignatures,
      functionMeta: this.functionMeta,
      appliedFingerprints: this.appliedFingerprints,
    });
  }
}
