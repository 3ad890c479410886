/**
 * Drift: after `pulumi up`, three hand edits of the kind that happen in a SQL editor:
 *   - a dropped policy        (guardian_select on public.organization_credits, sql/tenancy/30_organization_credits_select.sql)
 *   - an edited function body (consume_credits_rpc v2, an error text changed)
 *   - a dropped column        (credit_consumption_logs.idempotency_key, an additive column v2 writes: every v2 call
 *                              fails until it is repaired; that is the point of noticing)
 * `pulumi preview --refresh` shows each of them as a change of exactly its resource (a dropped object reads as gone,
 * so it is a create; an edited one as an update), `pulumi up --refresh` puts every object back identical, and a
 * refresh afterwards finds nothing. Without --refresh the engine compares with the last recorded state and sees
 * nothing: drift needs a refresh (docs/recovery.md, "Drift").
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { changed, type Migrated, seededStack, teardown } from "./helpers/migration";
import { collect } from "../harness/stack";

const URN = (type: string, name: string) => `urn:pulumi:test::guardian-credits::${type}$pulumi-nodejs:dynamic/guardian:SqlObject::${name}`;
const POLICY_URN = URN("guardian:components:TenantPolicies", "tenant-policies-organization_credits-select");
const FUNCTION_URN = URN("guardian:components:CreditFunctions", "credit-functions-consume-credits-rpc");
const COLUMNS_URN = URN("guardian:components:CreditSchema", "credit-schema-consumption-logs");
const VERIFICATION_URN = "urn:pulumi:test::guardian-credits::guardian:components:Verification$pulumi-nodejs:dynamic/guardian:Verification::verification-run";

const V2 = "public.consume_credits_rpc(uuid,text,integer,text)";
const LIVE = {
  policy: `SELECT policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies
            WHERE schemaname = 'public' AND tablename = 'organization_credits' AND policyname = 'guardian_select'`,
  function: `SELECT md5(pg_get_functiondef('${V2}'::regprocedure)) AS md5, (SELECT proacl::text FROM pg_proc WHERE oid = '${V2}'::regprocedure) AS acl`,
  column: `SELECT a.attnum > 0 AS present, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS "default"
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = 'public.credit_consumption_logs'::regclass AND a.attname = 'idempotency_key' AND NOT a.attisdropped`,
};

/** The URNs a preview would change, with the step (create, update, ...), from its engine events. */
function plannedSteps(events: EngineEvent[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of events) {
    const m = e.resourcePreEvent?.metadata;
    if (m && !["same", "refresh", "read"].includes(m.op)) out[m.urn] = m.op;
  }
  return out;
}

describe("drift: hand edits show in preview --refresh and up --refresh repairs them", () => {
  let m: Migrated;
  let org: string;
  let before: Record<keyof typeof LIVE, any>;
  let settle: any;
  let plain: any;
  let refreshed: { summary: Record<string, number>; steps: Record<string, string> };
  let brokenCall: any;
  let repair: any;
  let after: Record<keyof typeof LIVE, any>;
  let converged: Record<string, number>;

  const live = async () => {
    const out: any = {};
    for (const [k, sql] of Object.entries(LIVE)) out[k] = (await m.db.query(sql))[0] ?? null;
    return out as Record<keyof typeof LIVE, any>;
  };

  beforeAll(async () => {
    m = await seededStack(40);
    await m.t.stack.up({ onEvent: collect(m.t) });
    // What a refresh right after the first up finds (the first test).
    settle = await m.t.stack.up({ refresh: true, onEvent: collect(m.t) });
    before = await live();
    [{ organization_credits: org }] = await m.db.query(`SELECT organization_id AS organization_credits FROM public.organization_credits LIMIT 1`);

    // The three edits.
    await m.db.query(`DROP POLICY guardian_select ON public.organization_credits`);
    const [{ def }] = await m.db.query(`SELECT pg_get_functiondef('${V2}'::regprocedure) AS def`);
    expect(def).toContain("'quantity must be an integer from 1 to 100000'"); // a literal of v2's own body (its shared steps are guardian.consume_debit's)
    await m.db.query(def.replace("'quantity must be an integer from 1 to 100000'", "'bad quantity'"));
    await m.db.query(`ALTER TABLE public.credit_consumption_logs DROP COLUMN idempotency_key`);
    brokenCall = await m.db.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [org]).then(
      (r) => r[0].r,
      (e) => e,
    );

    plain = await m.t.stack.preview({ onEvent: collect(m.t) });
    const events: EngineEvent[] = [];
    const p = await m.t.stack.preview({ refresh: true, diff: true, onEvent: (e) => events.push(e) });
    refreshed = { summary: changed(p.changeSummary), steps: plannedSteps(events) };
    repair = await m.t.stack.up({ refresh: true, onEvent: collect(m.t) });
    after = await live();
    converged = changed((await m.t.stack.preview({ refresh: true, onEvent: collect(m.t) })).changeSummary);
  }, 300_000);
  afterAll(() => teardown(m));

  // A migration's later steps grant on schema guardian (sql/audit, sql/margins); the schema object's probe only
  // fingerprints what its own file enforces, so they do not read as drift of it (an earlier probe did).
  it("a refresh right after the first up finds no drift", () => {
    expect(changed(settle.summary.resourceChanges)).toEqual({});
  });

  it("the edits are real: the policy and the column are gone, the body differs, and v2 calls fail for want of the column", () => {
    expect(before.policy).not.toBeNull();
    expect(before.column).toMatchObject({ present: true, type: "text" });
    expect(brokenCall).toBeInstanceOf(Error);
    expect(brokenCall.code).toBe("42703");
    expect(brokenCall.message).toContain('column "idempotency_key"');
  });

  it("without --refresh a preview compares with the recorded state and sees no drift", () => {
    expect(changed(plain.changeSummary)).toEqual({});
  });

  it("preview --refresh shows exactly the three edited objects (two creates, one update), and the verification re-runs", () => {
    // The verification's refresh calls consume_credits_rpc for real and tests isolation: with the column gone, a call
    // errors, so it re-verifies (providers/verification.ts liveCheck) instead of keeping a stale pass.
    expect(refreshed.steps).toEqual({ [POLICY_URN]: "create", [COLUMNS_URN]: "create", [FUNCTION_URN]: "update", [VERIFICATION_URN]: "update" });
    expect(refreshed.summary).toEqual({ create: 2, update: 2 });
  });

  it("up --refresh puts the dropped policy back as it was", () => {
    expect(changed(repair.summary.resourceChanges)).toEqual({ create: 2, update: 2 }); // the three objects and the verification
    expect(after.policy).toEqual(before.policy);
  });

  it("up --refresh restores the function: pg_get_functiondef md5 and ACL equal to before", () => {
    expect(after.function).toEqual(before.function);
  });

  it("up --refresh restores the column (type, NOT NULL, default) and v2 calls work again", async () => {
    expect(after.column).toEqual(before.column);
    const [{ r }] = await m.db.query(`SELECT public.consume_credits_rpc($1, 'ai_chat', 1, 'after-repair') AS r`, [org]);
    expect(r.success === true || r.error_code === "INSUFFICIENT_CREDITS").toBe(true);
  });

  it("after the repair a refresh finds nothing", () => {
    expect(converged).toEqual({});
  });
});
