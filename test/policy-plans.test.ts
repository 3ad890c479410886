/**
 * The program's read policies leave the CRM's reads the plans they have with no policy in the way (issue 24, item 3).
 * On a database built from the CRM's own SQL, 100 log rows per organization, after `up` through the real engine:
 * each read the dashboard makes (harness/crmReads.ts), as the user who makes it (authenticated with JWT claims) and as
 * service_role (the same statement, which RLS does not filter), gives the same rows and walks the same path: the same
 * plan nodes on the same indexes in the same direction. The policy's own sub-selects (its InitPlans: at most one call
 * of each helper per statement, and a member's read calls one; the tests below count them) and its filter come on
 * top. What each read costs in time is the bench's (`npm run bench -- --crm-reads`), never a test's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { READER, READS, statementWith, type Read } from "../harness/crmReads";
import { collect, testStack, type TestStack } from "../harness/stack";
import { actAs, rolledBack } from "../lib/db";
import type { TestDb } from "./helpers/db";
import { freshRealCrmDb, sampleMember, sampleSuperAdmin, type CrmUser } from "./helpers/realCrm";

const LOGS_PER_ORG = 100;

/** The plan's path: every node but the policy's InitPlans, as "node type [on index] [direction]". */
function path(plan: any): string[] {
  const here = [plan["Node Type"], plan["Index Name"] && `on ${plan["Index Name"]}`, plan["Scan Direction"]].filter(Boolean).join(" ");
  const below = (plan.Plans ?? []).filter((p: any) => p["Parent Relationship"] !== "InitPlan").flatMap(path);
  return [here, ...below];
}

describe("the CRM's reads under the program's policies (real CRM schema, after up)", () => {
  let db: TestDb;
  let t: TestStack;
  let reader: Record<"member" | "super_admin", CrmUser>;

  beforeAll(async () => {
    db = await freshRealCrmDb({ orgs: 300, seed: 11 });
    await db.query(
      `INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success, created_at)
       SELECT o.id, (SELECT action_type FROM public.credit_actions ORDER BY action_type LIMIT 1), 1, 0, true, now() - interval '1 minute' * g
         FROM public.organizations o CROSS JOIN generate_series(1, $1) g`,
      [LOGS_PER_ORG],
    );
    reader = { member: await sampleMember(db), super_admin: await sampleSuperAdmin(db) };
    t = await testStack(db.url, { creditModel: "multi" });
    await t.stack.up({ onEvent: collect(t) });
    await db.query("ANALYZE");
  });
  afterAll(async () => {
    t?.destroyWorkspace();
    await db?.drop();
  });

  async function read(r: Read, as: "user" | "service_role"): Promise<{ path: string[]; rows: unknown[] }> {
    const who = reader[READER[r]];
    const c = await db.client();
    try {
      return await rolledBack(c, async () => {
        await actAs(c, as === "user" ? { role: "authenticated", sub: who.userId } : { role: "service_role" });
        const q = statementWith(r, who.organizationId);
        const [plan] = (await c.query({ text: `EXPLAIN (FORMAT JSON) ${q.text}`, values: q.values })).rows[0]["QUERY PLAN"];
        const rows = (await c.query(q)).rows;
        return { path: path(plan.Plan), rows };
      });
    } finally {
      await c.end();
    }
  }

  it.each(READS)("%s: the user's read walks the path of the same read with no policy, to the same rows", async (r) => {
    const user = await read(r, "user");
    const open = await read(r, "service_role");
    expect(user.rows.length, "rows").toBeGreaterThan(0);
    expect(user.rows).toEqual(open.rows);
    expect(user.path).toEqual(open.path);
  });

  /** How many times each helper of the policy ran in the read (EXPLAIN ANALYZE: an InitPlan runs when first needed). */
  async function helperCalls(r: Read): Promise<Record<string, number>> {
    const who = reader[READER[r]];
    const c = await db.client();
    try {
      return await rolledBack(c, async () => {
        await actAs(c, { role: "authenticated", sub: who.userId });
        const q = statementWith(r, who.organizationId);
        const [plan] = (await c.query({ text: `EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) ${q.text}`, values: q.values })).rows[0]["QUERY PLAN"];
        const calls: Record<string, number> = {};
        const walk = (p: any) => {
          if (p["Parent Relationship"] === "InitPlan") {
            const fn = /guardian_rls\.(\w+)\(\)/.exec(String(p.Output ?? ""))?.[1];
            if (fn) calls[fn] = (calls[fn] ?? 0) + p["Actual Loops"];
          }
          for (const x of p.Plans ?? []) walk(x);
        };
        walk(plan.Plan);
        return calls;
      });
    } finally {
      await c.end();
    }
  }

  it.each(READS.filter((r) => READER[r] === "member"))(
    "%s: a member's read calls current_org_id() once and never is_super_admin() (the super_admin arm comes last)",
    async (r) => {
      expect(await helperCalls(r)).toEqual({ current_org_id: 1, is_super_admin: 0 });
    },
  );

  it("plan totals: a super_admin's read calls each helper once", async () => {
    expect(await helperCalls("plan totals")).toEqual({ current_org_id: 1, is_super_admin: 1 });
  });

  it("the member's last 50 log rows come newest first along (organization_id, created_at), no sort", async () => {
    const { path: p } = await read("last 50 logs", "user");
    expect(p.join(" / ")).toMatch(/^Limit \/ Index Scan on \S+ Backward$/);
  });
});
