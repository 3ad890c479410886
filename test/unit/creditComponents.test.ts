/**
 * The credit engine's components under Pulumi mocks: the children each declares, with the inputs the SqlObject
 * provider and the policy pack read (kind, objectName, sqlFile, dropSql, meta).
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../lib/config";
import { sha256 } from "../../lib/sql";
import { actionCatalogueSql } from "../../lib/catalogueSql";
import { loadSqlParser } from "../../lib/pgsql";

interface Declared {
  type: string;
  name: string;
  inputs: Record<string, any>;
}
const declared: Declared[] = [];

beforeAll(loadSqlParser);
beforeAll(() => {
  pulumi.runtime.setMocks(
    {
      newResource(args) {
        declared.push({ type: args.type, name: args.name, inputs: args.inputs });
        return { id: `${args.name}-id`, state: { ...args.inputs, appliedFingerprint: `fp-${args.name}` } };
      },
      call: (args) => args.inputs,
    },
    "guardian-credits",
    "test",
    true,
  );
});

const ctx = () => {
  const config = parseConfig({ databaseUrl: "postgres://u:secret@h/db" });
  return { databaseUrl: pulumi.secret(config.databaseUrl), config };
};
const out = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply(resolve));
const children = (prefix: string) => declared.filter((d) => d.name.startsWith(`${prefix}-`));

describe("CreditSchema", () => {
  it("declares one retained SqlObject per schema file, named after its role", async () => {
    const { CreditSchema } = await import("../../components/creditSchema");
    const c = new CreditSchema("cs", { ctx: ctx() });
    const shas = await out(c.sqlSha256);
    expect(Object.keys(shas)).toEqual([
      "schema/01_guardian_schema.sql",
      "schema/02_organization_credits.sql",
      "schema/03_credit_actions.sql",
      "schema/04_credit_consumption_logs.sql",
      "schema/05_validate_constraints.sql",
      "schema/06_consumption_log_index.sql",
    ]);
    await out(c.appliedFingerprints);
    const kids = children("cs");
    expect(kids.map((k) => [k.name, k.inputs.kind, k.inputs.objectName, k.inputs.dropSql])).toEqual([
      ["cs-guardian-schema", "schema", "guardian", ""],
      ["cs-organization-credits", "columns", "public.organization_credits", ""],
      ["cs-credit-actions", "columns", "public.credit_actions", ""],
      ["cs-consumption-logs", "columns", "public.credit_consumption_logs", ""],
      ["cs-validate-constraints", "constraints", "Phase 3.5 CHECK constraints", ""],
      ["cs-consumption-log-index", "index", "public.credit_consumption_logs_org_epoch_success_idx", ""],
    ]);
    // The index is built CONCURRENTLY, which Postgres only allows outside a transaction.
    expect(kids.find((k) => k.name === "cs-consumption-log-index")!.inputs.transaction).toBe(false);
    expect(new Set(kids.map((k) => k.type))).toEqual(new Set(["pulumi-nodejs:dynamic/guardian:SqlObject"]));
  });
});

describe("Catalogue", () => {
  it("declares the generated action and plan SQL, named by the config keys it came from", async () => {
    const { Catalogue } = await import("../../components/catalogue");
    const x = ctx();
    const c = new Catalogue("cat", { ctx: x });
    expect(await out(c.sqlSha256)).toMatchObject({
      "(generated from guardian:actions)": sha256(actionCatalogueSql(x.config, { setPrices: x.config.creditModel === "multi" })),
    });
    expect(await out(c.actionTypes)).toContain("ai_email_generation");
    await out(c.appliedFingerprints);
    expect(children("cat").map((k) => [k.name, k.inputs.kind, k.inputs.objectName, k.inputs.sqlFile, k.inputs.dropSql])).toEqual([
      ["cat-actions", "catalogue", "public.credit_actions", "(generated from guardian:actions)", ""],
      ["cat-plans", "catalogue", "guardian.plan_catalogue", "(generated from guardian:plans, guardian:split, guardian:providerCosts)", ""],
    ]);
  });
});

describe("CreditFunctions", () => {
  it("declares v2, the batch and their caller rules as functions with policy facts and drops that tolerate absence", async () => {
    const { CreditFunctions } = await import("../../components/creditFunctions");
    const c = new CreditFunctions("fn", { ctx: ctx() });
    expect(await out(c.functionSignatures)).toEqual([
      "guardian.may_consume_for(uuid)",
      "guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)",
      "public.consume_credits_rpc(uuid,text,integer,text)",
      "public.consume_credits_batch(uuid,jsonb)",
    ]);
    await out(c.appliedFingerprints);
    const kids = children("fn");
    expect(kids.map((k) => [k.name, k.inputs.kind, k.inputs.objectName, k.inputs.dropSql, k.inputs.meta])).toEqual([
      [
        "fn-may-consume-for",
        "function",
        "guardian.may_consume_for(uuid)",
        "DROP FUNCTION IF EXISTS guardian.may_consume_for(uuid)",
        { securityDefiner: false, searchPath: "pg_catalog, pg_temp", executeRoles: [] },
      ],
      [
        "fn-consume-debit",
        "function",
        "guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)",
        "DROP FUNCTION IF EXISTS guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)",
        { securityDefiner: false, searchPath: "pg_catalog, pg_temp", executeRoles: [] },
      ],
      [
        "fn-consume-credits-rpc",
        "function",
        "public.consume_credits_rpc(uuid,text,integer,text)",
        "DROP FUNCTION IF EXISTS public.consume_credits_rpc(uuid,text,integer,text)",
        { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: ["authenticated", "service_role"] },
      ],
      [
        "fn-consume-credits-batch",
        "function",
        "public.consume_credits_batch(uuid,jsonb)",
        "DROP FUNCTION IF EXISTS public.consume_credits_batch(uuid,jsonb)",
        { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: ["authenticated", "service_role"] },
      ],
    ]);
    expect(kids[2].inputs.probeSql).toContain("to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)')");
  });
});
