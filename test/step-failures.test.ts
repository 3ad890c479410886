/**
 * consume_credits_rpc never breaks: a step of `pulumi up` is made to fail (after its SQL ran, before its COMMIT:
 * GUARDIAN_TEST_FAIL_STEP, providers/sqlObject.ts), on the CRM's real schema: the first step and the switch to v2
 * through the engine, then every step in turn in-process, as the engine would hand it to the provider. After every
 * failure, the application's calls, made as its real roles, get a correct answer from v1 or from v2; the next
 * `pulumi up`, without --refresh, repairs. And a v2 that would error on this database is never switched in: its trial calls fail inside
 * the installing transaction, which rolls back, and v1 keeps serving. A v2 broken after a successful up fails the
 * verification of the next `pulumi up --refresh`.
 */
import type { LocalWorkspace } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asUser, type TestDb } from "./helpers/db";
import { freshRealCrmDb, REAL_CRM_FACTS, sampleMember } from "./helpers/realCrm";
import { collect, testStack, type TestStack } from "../harness/stack";
import { type SqlObjectInputs, sqlObjectProvider } from "../providers/sqlObject";

/**
 * The steps on the program's critical path, in the order it applies them ("<kind> <objectName>" of their resource):
 * each one that fails holds back every step after it, so each failed up stops at a new step.
 */
const STEPS = [
  "schema guardian",
  "columns public.organization_credits",
  "constraints Phase 3.5 CHECK constraints",
  "trigger guardian.audit_append_only",
  "function guardian_rls.current_org_id(), guardian_rls.is_super_admin()",
  "policy public.organization_credits/select",
  "function guardian.may_consume_for(uuid)",
  "function public.consume_credits_rpc(uuid,text,integer,text)",
  "function public.consume_credits_batch(uuid,jsonb)",
  "function guardian.allocate_pools(text,integer,integer)",
  "trigger public.organization_credits/guardian_allocate_on_write",
];

const V2 = "public.consume_credits_rpc(uuid,text,integer,text)";

async function balance(db: TestDb, org: string): Promise<number> {
  return (await db.query(`SELECT credits_remaining FROM organization_credits WHERE organization_id = $1`, [org]))[0].credits_remaining;
}

/** The edge functions' call (service_role, named arguments) and a member's own call; both must answer correctly. */
async function callsAnswer(db: TestDb, org: string, member: string): Promise<void> {
  const cost = REAL_CRM_FACTS.actionCosts.ai_chat;
  const before = await balance(db, org);
  const r = await asUser(
    db,
    { role: "service_role" },
    async (c) => (await c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => 'ai_chat') AS r`, [org])).rows[0].r,
  );
  expect(r).toMatchObject({ success: true, remaining_credits: before - cost, credits_consumed: cost });
  expect(await balance(db, org)).toBe(before - cost);
  const mine = await asUser(
    db,
    { role: "authenticated", sub: member },
    async (c) => (await c.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [org])).rows[0].r,
  );
  expect(mine).toMatchObject({ success: true, remaining_credits: before - 2 * cost });
}

/** A real-CRM database, a member and its organization, with enough credits for every call a test makes. */
async function realCrmWithCaller(orgs: number, seed: number): Promise<{ db: TestDb; org: string; member: string }> {
  const db = await freshRealCrmDb({ orgs, seed });
  const m = await sampleMember(db);
  await db.query(`UPDATE organization_credits SET plan_name = 'free', total_credits = 100000, credits_remaining = 100000 WHERE organization_id = $1`, [
    m.organizationId,
  ]);
  return { db, org: m.organizationId, member: m.userId };
}

/** The steps that fail through the engine (the first, and the switch to v2); every step fails in-process below. */
const ENGINE_STEPS = [STEPS[0], `function ${V2}`];

/** Inputs of the program's SqlObject resources, in the order of the stack's state, as the engine handed them to the
 *  provider, with the connection of `databaseUrl` (the state's own is a secret of another database). */
async function sqlObjectInputs(t: TestStack, databaseUrl: string): Promise<SqlObjectInputs[]> {
  const resources: any[] = (await t.stack.exportStack()).deployment?.resources ?? [];
  return resources
    .filter((r) => String(r.type).startsWith("pulumi-nodejs:dynamic") && typeof r.inputs?.kind === "string" && typeof r.inputs?.probeSql === "string")
    .map((r) => {
      const inputs = Object.fromEntries(Object.entries(r.inputs).filter(([k]) => !k.startsWith("__") && k !== "databaseUrl"));
      return { ...inputs, databaseUrl } as SqlObjectInputs;
    });
}

describe("a failed step of up never breaks consume_credits_rpc, and the next up repairs", () => {
  let db: TestDb;
  let t: TestStack;
  let org: string;
  let member: string;

  beforeAll(async () => {
    ({ db, org, member } = await realCrmWithCaller(120, 5));
    t = await testStack(db.url, { creditModel: "multi", ddl: { lockTimeoutMs: 2000, retries: 0 } });
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  for (const step of ENGINE_STEPS) {
    it(`fails at "${step}": the update fails, and the application's calls still get correct answers`, async () => {
      const env = (t.stack.workspace as LocalWorkspace).envVars;
      env.GUARDIAN_TEST_FAIL_STEP = step;
      try {
        await expect(t.stack.up({ onEvent: collect(t) })).rejects.toThrow(`${step}: injected failure (GUARDIAN_TEST_FAIL_STEP)`);
      } finally {
        delete env.GUARDIAN_TEST_FAIL_STEP;
      }
      await callsAnswer(db, org, member);
    });
  }

  it("the next pulumi up, without --refresh, completes and verifies from the database", async () => {
    const r = await t.stack.up({ onEvent: collect(t) });
    expect(r.summary.result).toBe("succeeded");
    expect(r.outputs.verification.value.trialCalls).toBe("every call answered");
    const [{ n }] = await db.query(`SELECT count(*)::int n FROM organization_credits WHERE credit_model <> 'multi'`);
    expect(n).toBe(0);
    // Multi now: the org is served from its pools, and the answer carries v1's fields too.
    const [{ ai }] = await db.query(`SELECT ai_credits_available AS ai FROM organization_credits WHERE organization_id = $1`, [org]);
    const x = await asUser(
      db,
      { role: "service_role" },
      async (c) => (await c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => 'ai_chat') AS r`, [org])).rows[0].r,
    );
    expect(x).toMatchObject({ success: true, credit_model: "multi", credits_consumed: REAL_CRM_FACTS.actionCosts.ai_chat, remaining_credits: ai - 1 });
  });

  /**
   * Every step failing in turn, driven in-process (the engine is what the two runs above are about): on a fresh copy
   * of the same database, the SqlObject provider applies the program's objects in the order of the stack's state, as
   * the engine handed them over, and the step fails after its SQL ran, before its COMMIT. The calls answer after each.
   */
  describe("each step failing in turn, in-process, on a fresh copy", () => {
    let copy: { db: TestDb; org: string; member: string };
    let objects: SqlObjectInputs[];
    let applied = 0;
    const label = (o: SqlObjectInputs) => `${o.kind} ${o.objectName}`;
    /** The object's probe (its fingerprint row, or none), or the error it gives while what it reads is absent. */
    const probe = (o: SqlObjectInputs) => copy.db.query(o.probeSql).catch((e: Error) => ({ error: e.message }));

    beforeAll(async () => {
      copy = await realCrmWithCaller(120, 5);
      objects = await sqlObjectInputs(t, copy.db.url);
      expect(STEPS.filter((s) => !objects.some((o) => label(o) === s))).toEqual([]); // every step is one of them
    });
    afterAll(() => copy?.db.drop());

    for (const step of STEPS) {
      it(`fails at "${step}": nothing of it stays, and the application's calls still get correct answers`, async () => {
        const at = objects.findIndex((o) => label(o) === step);
        expect(at).toBeGreaterThanOrEqual(applied); // the steps come in the order the program applies them
        for (; applied < at; applied++) await sqlObjectProvider.create!(objects[applied]);
        const before = await probe(objects[at]); // the object as it was (absent: no row, or a probe that cannot run yet)
        process.env.GUARDIAN_TEST_FAIL_STEP = step;
        try {
          await expect(sqlObjectProvider.create!(objects[at])).rejects.toThrow(`${step}: injected failure (GUARDIAN_TEST_FAIL_STEP)`);
        } finally {
          delete process.env.GUARDIAN_TEST_FAIL_STEP;
        }
        expect(await probe(objects[at])).toEqual(before);
        await callsAnswer(copy.db, copy.org, copy.member);
      });
    }
  });
});

describe("a v2 that would error on this database is never switched in", () => {
  let db: TestDb;
  let t: TestStack;
  let org: string;
  let member: string;

  beforeAll(async () => {
    ({ db, org, member } = await realCrmWithCaller(60, 9));
    // Something of this database that v2 trips on and v1 does not: a trigger refusing log rows that name a model.
    await db.query(`CREATE FUNCTION public.refuse_modelled_logs() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN IF to_jsonb(NEW) ->> 'credit_model' IS NOT NULL THEN RAISE EXCEPTION 'this database refuses that log row'; END IF;
                          RETURN NEW; END $$`);
    await db.query(`CREATE TRIGGER refuse_modelled_logs BEFORE INSERT ON credit_consumption_logs FOR EACH ROW EXECUTE FUNCTION public.refuse_modelled_logs()`);
    t = await testStack(db.url, { creditModel: "multi" });
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  it("fails the update at v2, naming the trial call, and leaves v1 in place and serving", async () => {
    await expect(t.stack.up({ onEvent: collect(t) })).rejects.toThrow(
      /consume_credits_rpc\(uuid,text,integer,text\): NOT applied: .*trial call failed .*this database refuses that log row/s,
    );
    const fns = await db.query(`SELECT oid::regprocedure::text AS sig FROM pg_proc WHERE proname = 'consume_credits_rpc'`);
    expect(fns.map((f) => f.sig)).toEqual(["consume_credits_rpc(uuid,text)"]);
    await callsAnswer(db, org, member);
  });

  it("repairs on the next up, without --refresh, once the database lets v2 work", async () => {
    await db.query(`DROP TRIGGER refuse_modelled_logs ON credit_consumption_logs`);
    const r = await t.stack.up({ onEvent: collect(t) });
    expect(r.summary.result).toBe("succeeded");
    const [{ f }] = await db.query(`SELECT to_regprocedure($1) IS NOT NULL AS f`, [V2]);
    expect(f).toBe(true);
  });

  it("a v2 broken after a successful up fails the verification of the next pulumi up --refresh", async () => {
    await db.query(`CREATE TRIGGER refuse_modelled_logs BEFORE INSERT ON credit_consumption_logs FOR EACH ROW EXECUTE FUNCTION public.refuse_modelled_logs()`);
    try {
      await expect(t.stack.up({ onEvent: collect(t), refresh: true })).rejects.toThrow(
        /verification of the multi model FAILED[\s\S]*consume_credits_rpc: trial call failed/,
      );
    } finally {
      await db.query(`DROP TRIGGER refuse_modelled_logs ON credit_consumption_logs`);
    }
    const r = await t.stack.up({ onEvent: collect(t) });
    expect(r.summary.result).toBe("succeeded");
  });
});
