/**
 * The whole lifecycle on a database shaped like the CRM's real one (harness/fixtures/real-crm: profiles.user_role, no
 * is_trial, a credit row without its organization, 26 live prices, the live v1 with its COMMENT and grants, the
 * leaking policy "Authenticated users can view organization credits"), through the real engine: preview, up (multi),
 * the application's calls as its real roles, rollback, forward again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildReport } from "../operations/report";
import { asUser } from "./helpers/db";
import { collect, testStack, type TestStack } from "../harness/stack";
import { freshRealCrmDb, orgWithoutCredits, orphanCreditOrg, REAL_CRM_FACTS, sampleMember, sampleSuperAdmin, userWithoutProfile } from "./helpers/realCrm";
import type { TestDb } from "./helpers/db";

const LEAK = REAL_CRM_FACTS.leakingPolicy;
const GUARDED = ["organizations", "profiles", "organization_credits", "credit_actions", "credit_consumption_logs"];

async function prices(db: TestDb): Promise<Record<string, number>> {
  const rows = await db.query(`SELECT action_type, credits_cost FROM public.credit_actions`);
  return Object.fromEntries(rows.map((r) => [r.action_type, r.credits_cost]));
}

/** The call the CRM's edge functions make: service_role, named arguments. */
async function serviceCall(db: TestDb, org: string, action: string): Promise<any> {
  return asUser(
    db,
    { role: "service_role" },
    async (c) => (await c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => $2) AS r`, [org, action])).rows[0].r,
  );
}

describe("on the CRM's real schema: preview, up, calls, rollback, forward again", () => {
  let db: TestDb;
  let t: TestStack;
  let previewLog: string;
  let upResult: any;
  let v1: { def: string; md5: string; comment: string; acl: string };
  let livePrices: Record<string, number>;
  let rolledBack: any;

  beforeAll(async () => {
    db = await freshRealCrmDb({ orgs: 300, seed: 11 });
    [v1] = await db.query(`SELECT pg_get_functiondef(p.oid) AS def, md5(pg_get_functiondef(p.oid)) AS md5,
                                  obj_description(p.oid, 'pg_proc') AS comment, p.proacl::text AS acl
                             FROM pg_proc p WHERE p.oid = 'public.consume_credits_rpc(uuid,text)'::regprocedure`);
    livePrices = await prices(db);
    // One price set by config (live 5 -> 1); every other live price must stay.
    t = await testStack(db.url, { creditModel: "multi", actions: { ai_lead_scoring: { creditsCost: 1, ai: 1 } } });
    const p = await t.stack.preview({ onEvent: collect(t), diff: true });
    previewLog = t.logText() + p.stdout;
    upResult = await t.stack.up({ onEvent: collect(t) });
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  it("preview says which shape it found and what it will do with it", () => {
    expect(previewLog).toContain(
      "shape: profile role column profiles.user_role; trials by plan name (trial_14) and cycle_end_date: organization_credits has no is_trial",
    );
    expect(previewLog).toContain(`policy "${LEAK}" on public.organization_credits (SELECT`);
    expect(previewLog).toContain("v2 refuses with NO_CREDIT_ACCOUNT");
    expect(previewLog).toContain("v2 refuses with UNKNOWN_ACTION");
    expect(previewLog).toMatch(/ {2}pro: \d+ orgs -> split/);
    expect(previewLog).toContain(`catalogue: ${Object.keys(livePrices).length - 1} live price(s) kept as they are, 1 changed by config`);
    expect(previewLog).toContain("catalogue: price change ai_lead_scoring 5 -> 1 (guardian:actions.ai_lead_scoring.creditsCost); rollback restores 5");
  });

  it("keeps every live price but the one the config sets, which preview named", async () => {
    expect(livePrices).toEqual(REAL_CRM_FACTS.actionCosts);
    expect(await prices(db)).toEqual({ ...livePrices, ai_lead_scoring: 1 });
    expect(upResult.outputs).not.toHaveProperty("priceChanges"); // the component's output, not the stack's
  });

  it("serves the edge functions' call as service_role, with v1's fields in the result", async () => {
    const m = await sampleMember(db);
    const r = await serviceCall(db, m.organizationId, "ai_chat");
    expect(r).toMatchObject({ success: true, credits_consumed: livePrices.ai_chat });
    expect(typeof r.remaining_credits).toBe("number");
    const none = await serviceCall(db, (await orgWithoutCredits(db)).organizationId, "ai_chat");
    expect(none).toMatchObject({ success: false, error_code: "NO_CREDIT_ACCOUNT", remaining_credits: 0 });
    expect(typeof none.error).toBe("string");
    // A credit row whose organization is gone: an answer, not a foreign-key error.
    const orphan = await serviceCall(db, (await orphanCreditOrg(db)).organizationId, "ai_chat");
    expect(orphan).toMatchObject({ success: false, error_code: "NO_CREDIT_ACCOUNT" });
    const unknown = await serviceCall(db, m.organizationId, "no_such_action");
    expect(unknown).toMatchObject({ success: false, error_code: "UNKNOWN_ACTION" });
    expect((await db.query(`SELECT count(*)::int n FROM credit_actions WHERE action_type = 'no_such_action'`))[0].n).toBe(0);
  });

  it("refuses an expired trial by plan name and cycle end, there being no is_trial", async () => {
    const [trial] = await db.query(`SELECT organization_id FROM organization_credits oc
                                     WHERE lower(btrim(plan_name)) = 'trial_14' AND cycle_end_date < now()
                                       AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = oc.organization_id) LIMIT 1`);
    expect(trial).toBeDefined();
    expect(await serviceCall(db, trial.organization_id, "ai_chat")).toMatchObject({ success: false, error_code: "TRIAL_EXPIRED" });
  });

  it("owns every policy on the guarded tables: the ones it did not write are gone, and recorded in the backup", async () => {
    const foreign = await db.query(
      `SELECT tablename, policyname FROM pg_policies
                                     WHERE schemaname = 'public' AND tablename = ANY ($1) AND policyname NOT LIKE 'guardian\\_%'`,
      [GUARDED],
    );
    expect(foreign).toEqual([]);
    const [{ policies }] = await db.query(`SELECT policies FROM guardian.backups WHERE backup_id = $1`, [upResult.outputs.backupId.value]);
    expect(policies.map((p: any) => p.policyname)).toContain(LEAK);
    expect(upResult.outputs.replacedPolicies.value).toContain(`public.organization_credits/${LEAK} (SELECT)`);
  });

  it("a member reads only its own organization's rows, as the verification's matrix also says", async () => {
    const m = await sampleMember(db);
    for (const table of ["organization_credits", "credit_consumption_logs", "organizations"]) {
      const col = table === "organizations" ? "id" : "organization_id";
      const rows = await asUser(
        db,
        { role: "authenticated", sub: m.userId },
        async (c) => (await c.query(`SELECT DISTINCT ${col}::text AS org FROM public.${table}`)).rows,
      );
      expect(
        rows.map((r) => r.org),
        table,
      ).toEqual([m.organizationId]);
    }
    const lone = await userWithoutProfile(db);
    const seen = await asUser(
      db,
      { role: "authenticated", sub: lone.userId },
      async (c) => (await c.query(`SELECT count(*)::int n FROM public.organization_credits`)).rows[0].n,
    );
    expect(seen).toBe(0);
    const admin = await sampleSuperAdmin(db);
    const all = await asUser(
      db,
      { role: "authenticated", sub: admin.userId },
      async (c) => (await c.query(`SELECT count(*)::int n FROM public.organization_credits`)).rows[0].n,
    );
    expect(all).toBe((await db.query(`SELECT count(*)::int n FROM organization_credits`))[0].n);
    const matrix = upResult.outputs.verification.value.isolation;
    expect(Object.keys(matrix.subjects)).toEqual(expect.arrayContaining(["anon", "member1", "super_admin", "no_profile"]));
    expect(matrix.tables["public.organization_credits"].member1.otherOrganizations).toBe(0);
    expect(upResult.outputs.verification.value.trialCalls).toBe("every call answered");
    expect(upResult.outputs.verification.value.securityDefinerWarnings).toEqual([]);
  });

  it("lets the backend write credit rows as service_role, allocated by the trigger (signup, upgrade)", async () => {
    const org = await asUser(db, { role: "service_role" }, async (c) => {
      const o = (await c.query(`INSERT INTO organizations (name, slug) VALUES ('New Co', 'new-co-' || md5(random()::text)) RETURNING id`)).rows[0].id;
      await c.query(`INSERT INTO organization_credits (organization_id, plan_name, total_credits, credits_remaining) VALUES ($1, 'starter', 1000, 1000)`, [o]);
      return o;
    });
    const [row] = await db.query(`SELECT credit_model, ai_credits_total, sms_credits_available FROM organization_credits WHERE organization_id = $1`, [org]);
    expect(row).toEqual({ credit_model: "multi", ai_credits_total: 200, sms_credits_available: 50 });
    await asUser(db, { role: "service_role" }, (c) => c.query(`UPDATE organization_credits SET plan_name = 'premium' WHERE organization_id = $1`, [org]));
    const [after] = await db.query(`SELECT ai_credits_total FROM organization_credits WHERE organization_id = $1`, [org]);
    expect(after.ai_credits_total).toBe(1500);
  });

  it("reports the isolation matrix as real users, and the split rule per plan name", async () => {
    const r = await buildReport({ stack: t.stack });
    expect(r.figures.isolation?.violations).toEqual([]);
    expect(r.markdown).toContain("## Tenant isolation, as real users");
    expect(r.markdown).toMatch(/\| public\.organization_credits \| denied \| \d+ \/ 0 \|/);
    expect(r.markdown).toMatch(/\| `pro` \| \d+ \| split \|/);
    expect(r.figures.splitPlanNames.pro).toBeGreaterThan(0);
    expect(r.figures.v1Weaknesses).toEqual([]); // v2 is installed
  });

  describe("rollback (creditModel unified)", () => {
    let switchPreview: string;
    beforeAll(async () => {
      await t.setConfig({ creditModel: "unified" });
      switchPreview = (await t.stack.preview({ onEvent: collect(t), diff: true })).stdout;
      rolledBack = await t.stack.up({ onEvent: collect(t) });
    });

    it("previews the switch as one change with its steps, besides the resources that carry them out", () => {
      expect(switchPreview).toMatch(/~ pulumi-nodejs:dynamic\/guardian:ModelSwitch: \(update\)/);
      expect(switchPreview).toMatch(/~ model\s*: "multi" => "unified"/);
      expect(switchPreview).toContain("rollback 3: no organization left multi");
      expect(switchPreview).toMatch(/\+ pulumi-nodejs:dynamic\/guardian:Rollback: \(create\)/);
      expect(switchPreview).toMatch(/- pulumi-nodejs:dynamic\/guardian:SqlObject: \(delete\)/);
      expect(rolledBack.outputs.modelSwitchSteps.value[1]).toBe("rollback 1: the allocation trigger dropped (rollback-run)");
    });

    it("restores v1 byte for byte with a pinned search_path, its COMMENT, and its grants except anon and PUBLIC", async () => {
      const [now] = await db.query(`SELECT pg_get_functiondef(p.oid) AS def, obj_description(p.oid, 'pg_proc') AS comment,
                                           has_function_privilege('service_role', p.oid, 'EXECUTE') AS service,
                                           has_function_privilege('authenticated', p.oid, 'EXECUTE') AS auth,
                                           has_function_privilege('anon', p.oid, 'EXECUTE') AS anon,
                                           EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public
                                      FROM pg_proc p WHERE p.oid = 'public.consume_credits_rpc(uuid,text)'::regprocedure`);
      expect(now.def.replace(/\n SET search_path TO 'public', 'pg_temp'/, "")).toBe(v1.def);
      expect(now.def).toContain("SET search_path TO 'public', 'pg_temp'");
      expect(now.comment).toBe(v1.comment);
      expect(now).toMatchObject({ service: true, auth: true, anon: false, public: false });
      expect(rolledBack.outputs.unifiedValuesKept.value).toBe(true);
      expect(rolledBack.outputs.v1Weaknesses.value.join("\n")).toContain("without a row lock");
      // v1 came back pinned: no SECURITY DEFINER function left with a search_path a caller can shadow.
      expect(rolledBack.outputs.verification.value.securityDefinerWarnings.join("\n")).not.toContain("consume_credits_rpc(uuid,text)");
      expect(rolledBack.outputs.verification.value.v1SearchPathPinned).toBe(true);
    });

    it("the report lists the weaknesses v1 brought back", async () => {
      const r = await buildReport({ stack: t.stack });
      expect(r.figures.v1Weaknesses.join("\n")).toContain("adds any action type a caller sends to the price catalogue");
      expect(r.markdown).toContain("gives free credits to any organization id without a credit row");
    });

    it("puts the catalogue's backed-up prices back, the one config changed included", async () => {
      const now = await prices(db);
      for (const [a, cost] of Object.entries(livePrices)) expect(now[a], a).toBe(cost);
      expect(now.ai_lead_scoring).toBe(5);
      expect(rolledBack.outputs.pricesRestored.value).toBe(1);
    });

    it("keeps tenant isolation: the leaking policy does not come back", async () => {
      const m = await sampleMember(db);
      const orgsSeen = await asUser(db, { role: "authenticated", sub: m.userId }, async (c) =>
        (await c.query(`SELECT DISTINCT organization_id::text AS org FROM public.organization_credits`)).rows.map((r) => r.org),
      );
      expect(orgsSeen).toEqual([m.organizationId]);
    });

    it("migrates forward again", async () => {
      await t.setConfig({ creditModel: "multi" });
      const again = await t.stack.up({ onEvent: collect(t) });
      expect(again.summary.result).toBe("succeeded");
      const m = await sampleMember(db);
      expect(await serviceCall(db, m.organizationId, "email_send")).toHaveProperty("success");
    });
  });
});
