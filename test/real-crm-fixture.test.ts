/**
 * The real-CRM fixture (harness/fixtures/real-crm, harness/realCrm.ts) has every fact it promises: the production
 * shape that differs from this project's seed, the live v1 consume_credits_rpc and its behaviours, the leaking RLS,
 * and data with the CRM's untidiness (orphan credit row, orgs without credits, plan-name variants, negative balances,
 * expired trials, users without profile). Each test makes its own database and drops it.
 */
import type { Client } from "pg";
import { describe, expect, it } from "vitest";
import { DEFAULT_ACTIONS } from "../lib/config";
import { rolledBack } from "../lib/db";
import { asUser, type TestDb } from "./helpers/db";
import { freshRealCrmDb, orgWithoutCredits, orphanCreditOrg, REAL_CRM_FACTS as F, sampleMember, sampleSuperAdmin, userWithoutProfile } from "./helpers/realCrm";

async function withDb<T>(opts: { orgs: number; seed?: number; anchor?: Date }, fn: (db: TestDb) => Promise<T>): Promise<T> {
  const db = await freshRealCrmDb(opts);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

const int = (v: unknown) => Number(v);

/** Runs fn as a Data API caller, after `prelude` (run as the owner in the same transaction), then rolls back. */
async function asUserThenRollback<T>(
  db: TestDb,
  who: { role: "anon" | "authenticated" | "service_role"; sub?: string; claims?: Record<string, unknown> },
  prelude: string[],
  fn: (c: Client) => Promise<T>,
): Promise<T> {
  const c = await db.client();
  try {
    return await rolledBack(c, async () => {
      for (const s of prelude) await c.query(s);
      const claims = { role: who.role, ...(who.sub ? { sub: who.sub } : {}), ...(who.claims ?? {}) };
      await c.query("SELECT set_config('request.jwt.claims', $1, true)", [JSON.stringify(claims)]);
      await c.query(`SET LOCAL ROLE ${who.role}`);
      return await fn(c);
    });
  } finally {
    await c.end();
  }
}

describe("real CRM fixture: schema (orgs = 0)", () => {
  it("creates the production shape, not the seed's, and nothing but the price list", async () => {
    await withDb({ orgs: 0 }, async (db) => {
      for (const [table, cols] of Object.entries(F.columns)) {
        const got = await db.query<{ attname: string }>(
          `SELECT attname FROM pg_attribute WHERE attrelid = ('public.' || $1)::regclass AND attnum > 0 AND NOT attisdropped
            ORDER BY attnum`,
          [table],
        );
        expect(
          got.map((r) => r.attname),
          table,
        ).toEqual(cols);
      }
      // The seed's columns are absent.
      const absent = await db.query(
        `SELECT attrelid::regclass::text AS t, attname FROM pg_attribute
          WHERE attrelid IN ('public.profiles'::regclass, 'public.organization_credits'::regclass)
            AND attname IN ('role', 'is_trial') AND NOT attisdropped`,
      );
      expect(absent).toEqual([]);
      expect(F.absentColumns).toEqual({ profiles: ["role"], organization_credits: ["is_trial"] });

      // Column details that matter to a migration.
      const cols = await db.query(
        `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
          WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`,
      );
      const col = (t: string, c: string) => cols.find((r: any) => r.table_name === t && r.column_name === c);
      expect(col("organizations", "id")).toMatchObject({ data_type: "uuid", column_default: "gen_random_uuid()" });
      expect(col("organizations", "name")).toMatchObject({ is_nullable: "NO" });
      expect(col("organizations", "settings")).toMatchObject({ data_type: "jsonb", column_default: "'{}'::jsonb" });
      expect(col("profiles", "user_role")).toMatchObject({ data_type: "text", column_default: "'user'::text" });
      expect(col("organization_credits", "plan_name")).toMatchObject({ is_nullable: "NO", column_default: "'free'::text" });
      for (const c of ["total_credits", "credits_remaining"]) {
        expect(col("organization_credits", c)).toMatchObject({ data_type: "integer", is_nullable: "NO", column_default: "0" });
      }
      expect(col("organization_credits", "cycle_start_date")).toMatchObject({ is_nullable: "NO", column_default: "now()" });
      expect(col("organization_credits", "cycle_end_date")).toMatchObject({ is_nullable: "YES" });
      expect(col("credit_consumption_logs", "id")).toMatchObject({ data_type: "bigint" });
      expect(col("credit_consumption_logs", "success")).toMatchObject({ is_nullable: "NO", column_default: "true" });

      // user_role accepts exactly the four roles.
      const check = await db.query(`SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'profiles_user_role_check'`);
      for (const r of F.userRoles) expect(check[0].d).toContain(`'${r}'`);

      // Keys: organization_credits has its primary key and NO foreign key; the log references both parents.
      const cons = await db.query<{ t: string; contype: string; def: string }>(
        `SELECT conrelid::regclass::text AS t, contype, pg_get_constraintdef(oid) AS def FROM pg_constraint
          WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f', 'u') ORDER BY 1, 2, 3`,
      );
      const of = (t: string, type: string) => cons.filter((c) => c.t === t && c.contype === type).map((c) => c.def);
      expect(of("organization_credits", "p")).toEqual(["PRIMARY KEY (organization_id)"]);
      expect(of("organization_credits", "f")).toEqual([]);
      expect(F.creditsForeignKey).toBe(false);
      expect(of("organizations", "u")).toEqual(["UNIQUE (slug)"]);
      expect(of("profiles", "f").sort()).toEqual([
        "FOREIGN KEY (id) REFERENCES auth.users(id) ON DELETE CASCADE",
        "FOREIGN KEY (organization_id) REFERENCES organizations(id)",
      ]);
      expect(of("credit_consumption_logs", "f").sort()).toEqual([
        "FOREIGN KEY (action_type) REFERENCES credit_actions(action_type)",
        "FOREIGN KEY (organization_id) REFERENCES organizations(id) ON DELETE CASCADE",
      ]);
      expect(of("credit_actions", "p")).toEqual(["PRIMARY KEY (action_type)"]);
      const idx = await db.query(
        `SELECT indexdef FROM pg_indexes WHERE tablename = 'credit_consumption_logs' AND indexdef LIKE '%(organization_id, created_at)%'`,
      );
      expect(idx).toHaveLength(1);

      // The Supabase pieces come from the project's own 01_supabase.sql.
      const sup = await db.query(
        `SELECT to_regclass('auth.users') IS NOT NULL AS users,
                to_regprocedure('auth.uid()') IS NOT NULL AND to_regprocedure('auth.role()') IS NOT NULL
                  AND to_regprocedure('auth.jwt()') IS NOT NULL AS fns,
                (SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role') AS bypass,
                (SELECT count(*)::int FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role')) AS roles`,
      );
      expect(sup[0]).toEqual({ users: true, fns: true, bypass: true, roles: 3 });

      // No data, only the 26 live prices.
      const counts = await db.query(
        `SELECT (SELECT count(*)::int FROM organizations) o, (SELECT count(*)::int FROM profiles) p,
                (SELECT count(*)::int FROM organization_credits) oc, (SELECT count(*)::int FROM credit_consumption_logs) l,
                (SELECT count(*)::int FROM auth.users) u`,
      );
      expect(counts[0]).toEqual({ o: 0, p: 0, oc: 0, l: 0, u: 0 });
      const prices = await db.query<{ action_type: string; credits_cost: number }>(`SELECT action_type, credits_cost FROM credit_actions ORDER BY action_type`);
      expect(prices).toHaveLength(26);
      expect(Object.fromEntries(prices.map((r) => [r.action_type, r.credits_cost]))).toEqual(F.actionCosts);
    });
  });

  it("prices differ from what the project's defaults would write for at least 9 action types", () => {
    expect(Object.keys(F.actionCosts)).toHaveLength(26);
    const differ = Object.entries(F.actionCosts).filter(([t, cost]) => {
      const d = DEFAULT_ACTIONS[t] as (typeof DEFAULT_ACTIONS)[string] | undefined;
      if (!d) return false;
      const poolSum = d.ai + d.whatsapp + d.email + d.sms;
      const unified = (d as { creditsCost?: number }).creditsCost;
      return cost !== poolSum && (unified === undefined || cost !== unified);
    });
    expect(differ.length, differ.map(([t]) => t).join(", ")).toBeGreaterThanOrEqual(9);
    for (const t of F.chosenCosts) expect(F.actionCosts[t]).toBeGreaterThan(0);
  });

  it("installs the live v1 consume_credits_rpc: SECURITY DEFINER, no search_path, commented, EXECUTE for everyone", async () => {
    await withDb({ orgs: 0 }, async (db) => {
      const fn = await db.query(
        `SELECT p.oid::regprocedure::text AS sig, p.prosecdef, p.proconfig, l.lanname, pg_get_function_result(p.oid) AS result,
                pg_get_function_arguments(p.oid) AS args, obj_description(p.oid, 'pg_proc') AS comment,
                (SELECT array_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END ORDER BY 1)
                   FROM aclexplode(p.proacl) a WHERE a.privilege_type = 'EXECUTE') AS execute
           FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
          WHERE p.proname = 'consume_credits_rpc'`,
      );
      expect(fn).toHaveLength(1);
      expect(fn[0].sig).toBe("consume_credits_rpc(uuid,text)");
      expect(`public.${fn[0].sig}`).toBe(F.v1.signature);
      expect(fn[0]).toMatchObject({ prosecdef: true, proconfig: null, lanname: "plpgsql", result: "json" });
      expect(fn[0].args).toBe("p_organization_id uuid, p_action_type text");
      expect(fn[0].comment).toMatch(/\S/);
      for (const g of F.v1.executeGrantedTo) expect(fn[0].execute).toContain(g);
      const def = (await db.query(`SELECT pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure) AS d`))[0].d;
      expect(def).not.toMatch(/FOR\s+UPDATE/i);
    });
  });

  it("has the live RLS by name, no RLS on the catalogue and the log, and Supabase's default grants", async () => {
    await withDb({ orgs: 0 }, async (db) => {
      const pol = await db.query<{ tablename: string; policyname: string; roles: string; cmd: string; qual: string }>(
        `SELECT tablename, policyname, roles::text, cmd, qual FROM pg_policies WHERE schemaname = 'public' ORDER BY 1, 2`,
      );
      const names: Record<string, string[]> = {};
      for (const p of pol) (names[p.tablename] ??= []).push(p.policyname);
      expect(names).toEqual(F.policies);
      const leak = pol.find((p) => p.policyname === F.leakingPolicy)!;
      expect(leak).toMatchObject({ tablename: "organization_credits", roles: "{authenticated}", cmd: "SELECT" });
      expect(leak.qual).toBe("(auth.role() = 'authenticated'::text)");
      for (const p of pol.filter((p) => p.tablename === "organization_credits")) expect(p.cmd).toBe("SELECT");
      expect(pol.find((p) => p.policyname === "Super admins can view all organization credits")!.qual).toContain("super_admin");
      expect(pol.find((p) => p.policyname === "Users can view credits for their organization")!.qual).toContain("organization_id");

      const rls = await db.query<{ relname: string; relrowsecurity: boolean }>(
        `SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1`,
      );
      expect(Object.fromEntries(rls.map((r) => [r.relname, r.relrowsecurity]))).toEqual({
        credit_actions: false,
        credit_consumption_logs: false,
        organization_credits: true,
        organizations: true,
        profiles: true,
      });
      expect([...F.tablesWithoutRls].sort()).toEqual(["credit_actions", "credit_consumption_logs"]);

      const grants = await db.query<{ ok: boolean }>(
        `SELECT bool_and(has_table_privilege(r, 'public.' || t, p)) AS ok
           FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) r, unnest($1::text[]) t,
                unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p`,
        [F.tables],
      );
      expect(grants[0].ok).toBe(true);
      const seq = await db.query(
        `SELECT bool_and(has_sequence_privilege(r, 'public.credit_consumption_logs_id_seq', 'USAGE')) AS ok
           FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) r`,
      );
      expect(seq[0].ok).toBe(true);
    });
  });
});

describe("real CRM fixture: data", () => {
  it("has the CRM's untidy data: orgs without credits, one orphan credit row, variants, negatives, trials, users", async () => {
    const N = 400;
    await withDb({ orgs: N, seed: 7 }, async (db) => {
      const [s] = await db.query(
        `SELECT (SELECT count(*)::int FROM organizations) AS orgs,
                (SELECT count(*)::int FROM organizations o WHERE NOT EXISTS
                   (SELECT 1 FROM organization_credits oc WHERE oc.organization_id = o.id)) AS without_credits,
                (SELECT count(*)::int FROM organization_credits oc WHERE NOT EXISTS
                   (SELECT 1 FROM organizations o WHERE o.id = oc.organization_id)) AS orphans,
                (SELECT count(*)::int FROM organization_credits WHERE credits_remaining < 0) AS negative,
                (SELECT count(*)::int FROM organization_credits WHERE plan_name = 'trial_14' AND cycle_end_date < now()) AS expired,
                (SELECT count(*)::int FROM organization_credits WHERE plan_name = 'trial_14' AND cycle_end_date > now()) AS active,
                (SELECT count(*)::int FROM organization_credits WHERE plan_name = 'trial_14' AND
                   (cycle_end_date IS NULL OR cycle_end_date - cycle_start_date <> interval '14 days')) AS odd_trials,
                (SELECT count(*)::int FROM profiles WHERE user_role = 'super_admin') AS super_admins,
                (SELECT count(*)::int FROM auth.users u WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = u.id)) AS no_profile,
                (SELECT count(*)::int FROM profiles WHERE organization_id IS NULL) AS homeless`,
      );
      expect(s.orgs).toBe(N);
      expect(s.without_credits).toBeGreaterThanOrEqual(1);
      expect(s.without_credits).toBeLessThanOrEqual(Math.ceil(N * 0.07));
      expect(s.orphans).toBe(F.data.orphanCreditRows);
      expect(s.negative).toBeGreaterThanOrEqual(1);
      expect(s.negative).toBeLessThanOrEqual(Math.ceil(N * 0.02));
      expect(s.expired).toBeGreaterThanOrEqual(1);
      expect(s.active).toBeGreaterThanOrEqual(1);
      expect(s.odd_trials).toBe(0);
      expect(s.super_admins).toBeGreaterThanOrEqual(2);
      expect(s.no_profile).toBe(F.data.usersWithoutProfile);
      expect(s.homeless).toBe(0);

      // Plan names: every canonical name, the case/space variants, nothing else.
      const plans = (await db.query<{ plan_name: string }>(`SELECT DISTINCT plan_name FROM organization_credits`)).map((r) => r.plan_name);
      for (const p of [...F.planNames, ...F.planNameVariants]) expect(plans, JSON.stringify(p)).toContain(p);
      for (const p of plans) expect([...F.planNames, ...F.planNameVariants]).toContain(p);
      expect(F.planNames).toEqual([
        "free",
        "starter",
        "professional",
        "business",
        "premium",
        "enterprise",
        "trial_14",
        "pro",
        "advanced",
        "freelancer",
        "agency",
        "studio",
      ]);
      const totals = await db.query<{ plan: string; total: number; n: number }>(
        `SELECT lower(btrim(plan_name)) AS plan, min(total_credits) AS total, count(DISTINCT total_credits)::int AS n
           FROM organization_credits GROUP BY 1`,
      );
      for (const t of totals) expect({ plan: t.plan, total: t.total, n: t.n }).toEqual({ plan: t.plan, total: F.planCredits[t.plan], n: 1 });
      // A realistic mix: free and trials are the biggest groups, no plan is everything.
      const mix = await db.query<{ plan: string; n: number }>(
        `SELECT lower(btrim(plan_name)) AS plan, count(*)::int AS n FROM organization_credits GROUP BY 1 ORDER BY 2 DESC`,
      );
      expect(mix[0].n).toBeLessThan(N * 0.4);
      expect(["free", "trial_14", "starter"]).toContain(mix[0].plan);

      // Profiles: 1-3 members per org (user/admin/enterprise), super admins on top.
      const per = await db.query(
        `SELECT min(n)::int AS lo, max(n)::int AS hi, count(*)::int AS orgs FROM (
           SELECT o.id, count(p.id) AS n FROM organizations o
             LEFT JOIN profiles p ON p.organization_id = o.id AND p.user_role <> 'super_admin' GROUP BY o.id) x`,
      );
      expect(per[0]).toEqual({ lo: F.data.usersPerOrg[0], hi: F.data.usersPerOrg[1], orgs: N });
      const roles = (await db.query<{ user_role: string }>(`SELECT DISTINCT user_role FROM profiles ORDER BY 1`)).map((r) => r.user_role);
      expect(roles).toEqual([...F.userRoles].sort());
      const owners = await db.query(`SELECT count(*)::int AS n FROM organizations o JOIN profiles p ON p.id = o.owner_id AND p.organization_id = o.id`);
      expect(owners[0].n).toBe(N);

      // History: every org with credits has 1-4 attempts; successes and refusals both; consistent costs.
      const logs = await db.query(
        `SELECT count(*) FILTER (WHERE success)::int AS ok, count(*) FILTER (WHERE NOT success)::int AS refused,
                count(*) FILTER (WHERE success AND l.credits_consumed <> a.credits_cost)::int AS wrong_cost,
                count(*) FILTER (WHERE NOT success AND (l.credits_consumed <> 0 OR l.error_message IS NULL
                                                        OR l.credits_remaining >= a.credits_cost))::int AS wrong_refusal
           FROM credit_consumption_logs l JOIN credit_actions a USING (action_type)`,
      );
      expect(logs[0].ok).toBeGreaterThan(0);
      expect(logs[0].refused).toBeGreaterThan(0);
      expect(logs[0].wrong_cost).toBe(0);
      expect(logs[0].wrong_refusal).toBe(0);
      const perOrg = await db.query(
        `SELECT min(n)::int AS lo, max(n)::int AS hi FROM (
           SELECT o.id, count(l.id) AS n FROM organizations o JOIN organization_credits oc ON oc.organization_id = o.id
             LEFT JOIN credit_consumption_logs l ON l.organization_id = o.id GROUP BY o.id) x`,
      );
      expect(perOrg[0].lo).toBeGreaterThanOrEqual(F.data.logsPerOrg[0]);
      expect(perOrg[0].hi).toBeLessThanOrEqual(F.data.logsPerOrg[1]);

      // The helpers find what they promise.
      const m = await sampleMember(db);
      expect(m.userRole).not.toBe("super_admin");
      expect(await db.query(`SELECT 1 FROM organization_credits WHERE organization_id = $1`, [m.organizationId])).toHaveLength(1);
      expect((await sampleSuperAdmin(db)).userRole).toBe("super_admin");
      const np = await userWithoutProfile(db);
      expect(await db.query(`SELECT 1 FROM profiles WHERE id = $1`, [np.userId])).toEqual([]);
      expect(await db.query(`SELECT 1 FROM auth.users WHERE id = $1`, [np.userId])).toHaveLength(1);
      const nc = await orgWithoutCredits(db);
      expect(await db.query(`SELECT 1 FROM organizations WHERE id = $1`, [nc.organizationId])).toHaveLength(1);
      const orphan = await orphanCreditOrg(db);
      expect(await db.query(`SELECT 1 FROM organizations WHERE id = $1`, [orphan.organizationId])).toEqual([]);
    });
  });

  it("holds every data fact from the minimum size on, for any seed", async () => {
    const n = F.data.minOrgsForEveryFact;
    for (const seed of [1, 99]) {
      await withDb({ orgs: n, seed }, async (db) => {
        const [s] = await db.query(
          `SELECT (SELECT count(*)::int FROM organizations o WHERE NOT EXISTS
                     (SELECT 1 FROM organization_credits oc WHERE oc.organization_id = o.id)) AS without_credits,
                  (SELECT count(*)::int FROM organization_credits oc WHERE NOT EXISTS
                     (SELECT 1 FROM organizations o WHERE o.id = oc.organization_id)) AS orphans,
                  (SELECT count(*)::int FROM organization_credits WHERE credits_remaining < 0) AS negative,
                  (SELECT count(*)::int FROM organization_credits WHERE plan_name = 'trial_14' AND cycle_end_date < now()) AS expired,
                  (SELECT count(*)::int FROM organization_credits WHERE plan_name = 'trial_14' AND cycle_end_date > now()) AS active,
                  (SELECT count(*)::int FROM profiles WHERE user_role = 'super_admin') AS super_admins,
                  (SELECT count(DISTINCT user_role)::int FROM profiles) AS roles,
                  (SELECT count(*) FILTER (WHERE success)::int FROM credit_consumption_logs) AS ok,
                  (SELECT count(*) FILTER (WHERE NOT success)::int FROM credit_consumption_logs) AS refused,
                  (SELECT array_agg(DISTINCT plan_name ORDER BY plan_name) FROM organization_credits) AS plans`,
        );
        expect(s.without_credits).toBeGreaterThanOrEqual(1);
        expect(s.orphans).toBe(1);
        expect(s.negative).toBeGreaterThanOrEqual(1);
        expect(s.expired).toBeGreaterThanOrEqual(1);
        expect(s.active).toBeGreaterThanOrEqual(1);
        expect(s.super_admins).toBe(F.data.superAdmins);
        expect(s.roles).toBe(4);
        expect(s.ok).toBeGreaterThan(0);
        expect(s.refused).toBeGreaterThan(0);
        expect([...s.plans].sort()).toEqual([...F.planNames, ...F.planNameVariants].sort());
      });
    }
  });

  it("is deterministic for a seed, different for another", async () => {
    const fingerprint = (db: TestDb) =>
      db
        .query<{ f: string }>(
          `SELECT md5(concat_ws('|',
            (SELECT string_agg(concat_ws(',', id, name, slug, owner_id, settings, subscription_tier, status, vertical, created_at), ';' ORDER BY id) FROM organizations),
            (SELECT string_agg(concat_ws(',', organization_id, plan_name, total_credits, credits_remaining, cycle_start_date, cycle_end_date), ';' ORDER BY organization_id) FROM organization_credits),
            (SELECT string_agg(concat_ws(',', id, organization_id, user_role, email, full_name), ';' ORDER BY id) FROM profiles),
            (SELECT string_agg(concat_ws(',', id, email), ';' ORDER BY id) FROM auth.users),
            (SELECT string_agg(concat_ws(',', id, organization_id, action_type, credits_consumed, credits_remaining, success, error_message, created_at), ';' ORDER BY id) FROM credit_consumption_logs)
          )) AS f`,
        )
        .then((r) => r[0].f);
    const anchor = new Date();
    const a = await withDb({ orgs: 300, seed: 42, anchor }, fingerprint);
    const b = await withDb({ orgs: 300, seed: 42, anchor }, fingerprint);
    const c = await withDb({ orgs: 300, seed: 43, anchor }, fingerprint);
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });

  it("creates 10,000 organizations in a few seconds", async () => {
    const t0 = Date.now();
    const db = await freshRealCrmDb({ orgs: 10_000, seed: 3 });
    const ms = Date.now() - t0;
    try {
      const [r] = await db.query(
        `SELECT (SELECT count(*)::int FROM organizations) o, (SELECT count(*)::int FROM organization_credits) oc,
                (SELECT count(*)::int FROM profiles) p, (SELECT count(*)::int FROM credit_consumption_logs) l`,
      );
      expect(r.o).toBe(10_000);
      // ~3% without a credit row, plus the orphan.
      expect(r.oc).toBeGreaterThan(10_000 * 0.95);
      expect(r.oc).toBeLessThan(10_000 * 0.99);
      expect(r.p).toBeGreaterThan(15_000);
      expect(r.l).toBeGreaterThan(20_000);
      expect(ms).toBeLessThan(20_000);
    } finally {
      await db.drop();
    }
  });
});

describe("real CRM fixture: live v1 behaviours (as service_role)", () => {
  const rpc = (c: Client, org: string, action: string) => c.query(`SELECT public.consume_credits_rpc($1, $2) AS r`, [org, action]).then((q) => q.rows[0].r);

  it("registers an unknown action at 1 credit and charges it", async () => {
    await withDb({ orgs: 30, seed: 5 }, async (db) => {
      const m = await sampleMember(db);
      await db.query(`UPDATE organization_credits SET credits_remaining = 50 WHERE organization_id = $1`, [m.organizationId]);
      const before = { credits_remaining: 50 };
      const r = await asUser(db, { role: "service_role" }, (c) => rpc(c, m.organizationId, "brand_new_action"));
      expect(r).toEqual({ success: true, remaining_credits: before.credits_remaining - 1, credits_consumed: F.v1.unknownActionCost });
      const act = await db.query(`SELECT credits_cost FROM credit_actions WHERE action_type = 'brand_new_action'`);
      expect(act).toEqual([{ credits_cost: 1 }]);
      expect(int((await db.query(`SELECT count(*) n FROM credit_actions`))[0].n)).toBe(27);
      const log = await db.query(
        `SELECT credits_consumed, credits_remaining, success FROM credit_consumption_logs
          WHERE organization_id = $1 AND action_type = 'brand_new_action'`,
        [m.organizationId],
      );
      expect(log).toEqual([{ credits_consumed: 1, credits_remaining: before.credits_remaining - 1, success: true }]);
    });
  });

  it("gives an organization without a credit row 100 free credits on its first call, then charges it", async () => {
    await withDb({ orgs: 30, seed: 5 }, async (db) => {
      const { organizationId } = await orgWithoutCredits(db);
      const r = await asUser(db, { role: "service_role" }, (c) => rpc(c, organizationId, "bulk_email"));
      expect(r).toEqual({ success: true, remaining_credits: 90, credits_consumed: 10 });
      const row = await db.query(
        `SELECT plan_name, total_credits, credits_remaining, cycle_end_date > cycle_start_date AS cycle
           FROM organization_credits WHERE organization_id = $1`,
        [organizationId],
      );
      expect(row).toEqual([{ ...F.v1.newAccount, credits_remaining: 90, cycle: true }]);
    });
  });

  it("refuses when the balance is below the cost, logs the refusal, and charges otherwise", async () => {
    await withDb({ orgs: 30, seed: 5 }, async (db) => {
      const m = await sampleMember(db);
      await db.query(`UPDATE organization_credits SET credits_remaining = 12 WHERE organization_id = $1`, [m.organizationId]);
      const results = await asUser(db, { role: "service_role" }, async (c) => [
        await rpc(c, m.organizationId, "bulk_email"),
        await rpc(c, m.organizationId, "bulk_email"),
      ]);
      expect(results).toEqual([
        { success: true, remaining_credits: 2, credits_consumed: 10 },
        { success: false, error: F.v1.insufficientError, remaining_credits: 2, required_credits: 10 },
      ]);
      const logs = await db.query(
        `SELECT credits_consumed, credits_remaining, success, error_message FROM credit_consumption_logs
          WHERE organization_id = $1 AND action_type = 'bulk_email' AND created_at >= now() - interval '1 hour' ORDER BY id`,
        [m.organizationId],
      );
      expect(logs).toEqual([
        { credits_consumed: 10, credits_remaining: 2, success: true, error_message: null },
        { credits_consumed: 0, credits_remaining: 2, success: false, error_message: F.v1.insufficientError },
      ]);
      // A negative balance is refused the same way.
      const [neg] = await db.query(`SELECT organization_id, credits_remaining FROM organization_credits o
        WHERE credits_remaining < 0 AND EXISTS (SELECT 1 FROM organizations WHERE id = o.organization_id) LIMIT 1`);
      const rn = await asUser(db, { role: "service_role" }, (c) => rpc(c, neg.organization_id, "ai_chat"));
      expect(rn).toMatchObject({ success: false, remaining_credits: neg.credits_remaining, required_credits: 1 });
    });
  });

  it("trusts any caller: anon charges another organization; only the log's foreign key stops the orphan", async () => {
    await withDb({ orgs: 30, seed: 5 }, async (db) => {
      const m = await sampleMember(db);
      await db.query(`UPDATE organization_credits SET credits_remaining = 50 WHERE organization_id = $1`, [m.organizationId]);
      const before = { credits_remaining: 50 };
      const r = await asUser(db, { role: "anon" }, (c) => rpc(c, m.organizationId, "ai_chat"));
      expect(r).toMatchObject({ success: true, remaining_credits: before.credits_remaining - 1 });
      const other = await userWithoutProfile(db); // any signed-in user, even one without an organization
      const r2 = await asUser(db, { role: "authenticated", sub: other.userId }, (c) => rpc(c, m.organizationId, "ai_chat"));
      expect(r2).toMatchObject({ success: true, remaining_credits: before.credits_remaining - 2 });

      const orphan = await orphanCreditOrg(db);
      await expect(asUser(db, { role: "service_role" }, (c) => rpc(c, orphan.organizationId, "ai_chat"))).rejects.toMatchObject({
        code: F.v1.unknownOrganizationSqlState,
      });
      const ghost = "00000000-0000-4000-8000-00000000abcd";
      await expect(asUser(db, { role: "service_role" }, (c) => rpc(c, ghost, "ai_chat"))).rejects.toMatchObject({
        code: F.v1.unknownOrganizationSqlState,
      });
      expect(await db.query(`SELECT 1 FROM organization_credits WHERE organization_id = $1`, [ghost])).toEqual([]);
    });
  });
});

describe("real CRM fixture: live RLS", () => {
  it("leaks every organization's credits to any authenticated user, and nothing to anon", async () => {
    await withDb({ orgs: 60, seed: 11 }, async (db) => {
      const m = await sampleMember(db);
      const total = int((await db.query(`SELECT count(*) n FROM organization_credits`))[0].n);
      const seen = await asUser(db, { role: "authenticated", sub: m.userId }, (c) =>
        c
          .query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE organization_id <> $1)::int AS others FROM organization_credits`, [m.organizationId])
          .then((q) => q.rows[0]),
      );
      expect(seen).toEqual({ n: total, others: total - 1 });
      // Even a user without a profile (no organization at all) reads them, the orphan row included.
      const np = await userWithoutProfile(db);
      const orphan = await orphanCreditOrg(db);
      const seenNp = await asUser(db, { role: "authenticated", sub: np.userId }, (c) =>
        c.query(`SELECT count(*)::int AS n, bool_or(organization_id = $1) AS orphan FROM organization_credits`, [orphan.organizationId]).then((q) => q.rows[0]),
      );
      expect(seenNp).toEqual({ n: total, orphan: true });
      const anon = await asUser(db, { role: "anon" }, (c) => c.query(`SELECT count(*)::int AS n FROM organization_credits`).then((q) => q.rows[0].n));
      expect(anon).toBe(0);
      // No RLS on the catalogue and the log: every authenticated user reads every org's history.
      const logs = await asUser(db, { role: "authenticated", sub: m.userId }, (c) =>
        c.query(`SELECT count(DISTINCT organization_id)::int AS n FROM credit_consumption_logs`).then((q) => q.rows[0].n),
      );
      expect(logs).toBe(int((await db.query(`SELECT count(DISTINCT organization_id) n FROM credit_consumption_logs`))[0].n));
    });
  });

  it("without the leaking policy, the other two policies scope credits to the own org, or all for a super admin", async () => {
    await withDb({ orgs: 60, seed: 11 }, async (db) => {
      const m = await sampleMember(db);
      const sa = await sampleSuperAdmin(db);
      const total = int((await db.query(`SELECT count(*) n FROM organization_credits`))[0].n);
      const drop = [`DROP POLICY "${F.leakingPolicy}" ON public.organization_credits`];
      const own = await asUserThenRollback(db, { role: "authenticated", sub: m.userId }, drop, (c) =>
        c.query(`SELECT organization_id FROM organization_credits`).then((q) => q.rows.map((r) => r.organization_id)),
      );
      expect(own).toEqual([m.organizationId]);
      const all = await asUserThenRollback(db, { role: "authenticated", sub: sa.userId }, drop, (c) =>
        c.query(`SELECT count(*)::int AS n FROM organization_credits`).then((q) => q.rows[0].n),
      );
      expect(all).toBe(total);
      // The policy is back (rolled back).
      expect(await db.query(`SELECT 1 FROM pg_policies WHERE policyname = $1`, [F.leakingPolicy])).toHaveLength(1);
    });
  });

  it("scopes organizations and profiles: own org and own profile; super admins see all", async () => {
    await withDb({ orgs: 60, seed: 11 }, async (db) => {
      const m = await sampleMember(db);
      const sa = await sampleSuperAdmin(db);
      const orgs = int((await db.query(`SELECT count(*) n FROM organizations`))[0].n);
      const profiles = int((await db.query(`SELECT count(*) n FROM profiles`))[0].n);
      const count = (t: string) => (c: Client) => c.query(`SELECT count(*)::int AS n FROM ${t}`).then((q) => q.rows[0].n as number);

      const memberOrgs = await asUser(db, { role: "authenticated", sub: m.userId }, (c) =>
        c.query(`SELECT id FROM organizations`).then((q) => q.rows.map((r) => r.id)),
      );
      expect(memberOrgs).toEqual([m.organizationId]);
      const memberProfiles = await asUser(db, { role: "authenticated", sub: m.userId }, (c) =>
        c.query(`SELECT id, user_role FROM profiles`).then((q) => q.rows),
      );
      expect(memberProfiles).toEqual([{ id: m.userId, user_role: m.userRole }]);

      expect(await asUser(db, { role: "authenticated", sub: sa.userId }, count("organizations"))).toBe(orgs);
      // The profiles policy for super admins reads the user_role claim of the JWT, as the CRM's access-token hook sets it.
      expect(await asUser(db, { role: "authenticated", sub: sa.userId }, count("profiles"))).toBe(1);
      expect(await asUserThenRollback(db, { role: "authenticated", sub: sa.userId, claims: { user_role: "super_admin" } }, [], count("profiles"))).toBe(
        profiles,
      );
      expect(await asUser(db, { role: "anon" }, count("organizations"))).toBe(0);
      expect(await asUser(db, { role: "anon" }, count("profiles"))).toBe(0);
    });
  });
});
