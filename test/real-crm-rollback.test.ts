/**
 * Rolling back on the CRM's real schema: `npm run rollback` (one command back to an earlier update, from the stack
 * history) after the migration and live calls; and guardian:rollback.function = safe, which keeps a locked,
 * caller-checked function with v1's signature and result instead of v1's weaknesses.
 */
import * as fs from "fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rollbackCommand } from "../operations/rollback";
import { asUser, type TestDb } from "./helpers/db";
import { gitProject } from "./helpers/gitProject";
import { freshRealCrmDb, REAL_CRM_FACTS, sampleMember } from "./helpers/realCrm";
import { collect, testStack, type TestStack } from "../harness/stack";

async function v1Now(db: TestDb) {
  const [f] = await db.query(`SELECT pg_get_functiondef(p.oid) AS def, obj_description(p.oid, 'pg_proc') AS comment
                                FROM pg_proc p WHERE p.oid = to_regprocedure('public.consume_credits_rpc(uuid,text)')`);
  return f;
}

describe("npm run rollback on the CRM's real schema", () => {
  let db: TestDb;
  let t: TestStack;
  let repo: string;
  let before: { def: string; comment: string };

  beforeAll(async () => {
    db = await freshRealCrmDb({ orgs: 80, seed: 21 });
    before = await v1Now(db);
    repo = gitProject();
    t = await testStack(db.url, { creditModel: "unified" }, { dir: repo, stackName: "test" });
    await t.stack.up({ onEvent: collect(t) }); // version 1: unified, tenancy applied, v1 untouched
    await t.setConfig({ creditModel: "multi" });
    await t.stack.up({ onEvent: collect(t) }); // version 2: multi
    const m = await sampleMember(db);
    for (let i = 0; i < 5; i++) {
      await asUser(db, { role: "service_role" }, (c) =>
        c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => 'ai_chat')`, [m.organizationId]),
      );
    }
  });
  afterAll(async () => {
    await db?.drop();
    if (repo) fs.rmSync(repo, { recursive: true, force: true });
    if (t) fs.rmSync(t.stateDir, { recursive: true, force: true });
  });

  it("goes back to version 1: v1 byte for byte (search_path pinned) with its COMMENT, verified, and the live prices", async () => {
    const lines: string[] = [];
    const r = await rollbackCommand({ stack: "test", cwd: repo, envVars: t.env, yes: true, log: (s) => lines.push(s), error: (s) => lines.push(s) });
    expect(r.exitCode, lines.join("\n")).toBe(0);
    expect(r.outcome).toBe("rolled-back");
    const now = await v1Now(db);
    // v1's definition as backed up, plus the pinned search_path (contract: "Rollback").
    expect(now.def.replace(/\n SET search_path TO 'public', 'pg_temp'/, "")).toBe(before.def);
    expect(now.def).toContain("SET search_path TO 'public', 'pg_temp'");
    expect(now.comment).toBe(before.comment);
    const prices = Object.fromEntries((await db.query(`SELECT action_type, credits_cost FROM credit_actions`)).map((x) => [x.action_type, x.credits_cost]));
    for (const [a, cost] of Object.entries(REAL_CRM_FACTS.actionCosts)) expect(prices[a], a).toBe(cost);
    const [{ multi }] = await db.query(`SELECT count(*) FILTER (WHERE credit_model = 'multi')::int AS multi FROM organization_credits`);
    expect(multi).toBe(0);
  });
});

describe("guardian:rollback.function = safe, on the CRM's real schema", () => {
  let db: TestDb;
  let t: TestStack;
  let rolled: any;

  beforeAll(async () => {
    db = await freshRealCrmDb({ orgs: 60, seed: 23 });
    t = await testStack(db.url, { creditModel: "multi", rollback: { function: "safe" } });
    await t.stack.up({ onEvent: collect(t) });
    await t.setConfig({ creditModel: "unified" });
    rolled = await t.stack.up({ onEvent: collect(t) });
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  it("installs a unified function with v1's signature that locks the row and checks the caller", async () => {
    expect(rolled.outputs.functionRestored.value).toBe("safe");
    expect(rolled.outputs.v1Weaknesses.value).toEqual([]);
    const f = await v1Now(db);
    expect(f.def).toMatch(/FOR UPDATE/);
    expect(f.comment).toContain("guardian:rollback.function = safe");
    const m = await sampleMember(db);
    const [other] = await db.query(
      `SELECT oc.organization_id FROM organization_credits oc JOIN organizations o ON o.id = oc.organization_id
                                     WHERE oc.organization_id <> $1 LIMIT 1`,
      [m.organizationId],
    );
    const before = await db.query(`SELECT credits_remaining FROM organization_credits WHERE organization_id = $1`, [other.organization_id]);
    const r = await asUser(
      db,
      { role: "authenticated", sub: m.userId },
      async (c) => (await c.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [other.organization_id])).rows[0].r,
    );
    expect(r).toEqual({ success: false, error: "Not allowed", remaining_credits: 0, required_credits: 0 });
    expect(await db.query(`SELECT credits_remaining FROM organization_credits WHERE organization_id = $1`, [other.organization_id])).toEqual(before);
    // The edge functions' call still gets v1's result shape.
    const ok = await asUser(
      db,
      { role: "service_role" },
      async (c) => (await c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => 'ai_chat') AS r`, [m.organizationId])).rows[0].r,
    );
    expect(Object.keys(ok).sort()).toEqual(
      ok.success ? ["credits_consumed", "remaining_credits", "success"] : ["error", "remaining_credits", "required_credits", "success"],
    );
    const unknown = await asUser(
      db,
      { role: "service_role" },
      async (c) => (await c.query(`SELECT public.consume_credits_rpc($1, 'no_such_action') AS r`, [m.organizationId])).rows[0].r,
    );
    expect(unknown).toMatchObject({ success: false, error: "Unknown action type" });
    expect((await db.query(`SELECT count(*)::int n FROM credit_actions WHERE action_type = 'no_such_action'`))[0].n).toBe(0);
    const anon = await asUser(db, { role: "anon" }, (c) => c.query(`SELECT public.consume_credits_rpc($1, 'ai_chat')`, [m.organizationId])).catch((e) => e);
    expect(String(anon.message)).toMatch(/permission denied for function consume_credits_rpc/);
  });
});
