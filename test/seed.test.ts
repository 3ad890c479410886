/**
 * `npm run seed`: the pre-Phase-3.5 baseline where missing, nothing changed where present, and a deterministic,
 * realistic set of organizations on top.
 */
import { execFile } from "child_process";
import * as path from "path";
import { afterAll, describe, expect, it } from "vitest";
import { seed, SHOWCASE } from "../operations/seed";
import { parseArgs } from "../scripts/seed";
import { freshDb, type TestDb } from "./helpers/db";

const ROOT = path.resolve(__dirname, "..");
const USAGE = "(usage: npm run seed -- --database-url URL --orgs N [--seed S] [--json])";
const ANCHOR = new Date("2025-10-15T00:00:00Z");
const PUBLISHED = ["starter", "professional", "business", "premium", "enterprise", "trial_14"];
const LIVE_CATALOGUE = [
  { action_type: "ai_assistant", credits_cost: 2 },
  { action_type: "ai_chat", credits_cost: 1 },
  { action_type: "automation_run", credits_cost: 3 },
  { action_type: "bulk_email", credits_cost: 10 },
  { action_type: "email_send", credits_cost: 1 },
  { action_type: "form_generation", credits_cost: 5 },
  { action_type: "sms_send", credits_cost: 2 },
  { action_type: "whatsapp_message", credits_cost: 1 },
];

const dbs: TestDb[] = [];
async function newDb(baseline: boolean): Promise<TestDb> {
  const db = await freshDb({ baseline, prefix: "gt_seed" });
  dbs.push(db);
  return db;
}
afterAll(async () => {
  await Promise.all(dbs.map((d) => d.drop()));
});

/** Everything the baseline defines, as the catalogs show it (no timestamps). */
async function catalog(db: TestDb) {
  const q = (sql: string) => db.query(sql);
  return {
    tables: await q(`SELECT c.oid::regclass::text AS name, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text AS acl
                     FROM pg_class c WHERE c.relnamespace IN ('public'::regnamespace, 'auth'::regnamespace) ORDER BY 1`),
    columns: await q(`SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
                      FROM information_schema.columns WHERE table_schema IN ('public', 'auth') ORDER BY 1, 2, ordinal_position`),
    constraints: await q(`SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                          WHERE connamespace IN ('public'::regnamespace, 'auth'::regnamespace) ORDER BY 1, 2`),
    functions: await q(`SELECT p.oid::regprocedure::text AS fn, pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl, p.prosecdef
                        FROM pg_proc p WHERE p.pronamespace IN ('public'::regnamespace, 'auth'::regnamespace) AND p.prokind IN ('f', 'p')
                        ORDER BY 1`),
    policies: await q(`SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2, 3`),
    extensions: await q(`SELECT extname, extversion FROM pg_extension ORDER BY 1`),
    catalogue: await q(`SELECT action_type, credits_cost, description FROM credit_actions ORDER BY 1`),
    rows: await q(`SELECT (SELECT count(*) FROM organizations)::int AS orgs, (SELECT count(*) FROM organization_credits)::int AS credits,
                          (SELECT count(*) FROM profiles)::int AS profiles, (SELECT count(*) FROM auth.users)::int AS users,
                          (SELECT count(*) FROM credit_consumption_logs)::int AS logs`),
  };
}

/** Every seeded row, in a stable order. */
async function dump(db: TestDb, slugLike = "%") {
  const orgs = `(SELECT id FROM organizations WHERE slug LIKE '${slugLike}')`;
  return {
    orgs: await db.query(`SELECT * FROM organizations WHERE slug LIKE $1 ORDER BY slug`, [slugLike]),
    credits: await db.query(`SELECT * FROM organization_credits WHERE organization_id IN ${orgs} ORDER BY organization_id`),
    profiles: await db.query(`SELECT p.*, u.email AS auth_email, u.created_at AS auth_created_at FROM profiles p JOIN auth.users u USING (id)
                              WHERE p.organization_id IN ${orgs} ORDER BY p.id`),
    logs: await db.query(`SELECT * FROM credit_consumption_logs WHERE organization_id IN ${orgs} ORDER BY id`),
  };
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/seed.ts", ...args], { cwd: ROOT }, (err: any, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe("seed: the baseline", () => {
  it("creates exactly the pre-Phase-3.5 schema with --orgs 0", async () => {
    const db = await newDb(false);
    const r = await seed({ databaseUrl: db.url, orgs: 0 });
    expect(r.orgsAdded).toBe(0);
    expect(r.baseline.created).toEqual(
      expect.arrayContaining([
        "public.organizations",
        "public.profiles",
        "public.organization_credits",
        "public.credit_actions",
        "public.credit_consumption_logs",
        "public.consume_credits_rpc(uuid,text)",
      ]),
    );

    const tables = await db.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`);
    expect(tables.map((t) => t.table_name)).toEqual(["credit_actions", "credit_consumption_logs", "organization_credits", "organizations", "profiles"]);
    const [auth] = await db.query(`SELECT to_regclass('auth.users')::text AS users, to_regprocedure('auth.uid()')::text AS uid,
                                          to_regprocedure('auth.role()')::text AS role, to_regprocedure('auth.jwt()')::text AS jwt`);
    expect(auth).toEqual({ users: "auth.users", uid: "auth.uid()", role: "auth.role()", jwt: "auth.jwt()" });
    const roles = await db.query(`SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY 1`);
    expect(roles.map((x) => x.rolname)).toEqual(["anon", "authenticated", "service_role"]);
    const fns = await db.query(`SELECT oid::regprocedure::text AS sig, prosecdef FROM pg_proc WHERE proname = 'consume_credits_rpc'`);
    expect(fns).toEqual([{ sig: "consume_credits_rpc(uuid,text)", prosecdef: true }]);
    expect(await db.query(`SELECT action_type, credits_cost FROM credit_actions ORDER BY 1`)).toEqual(LIVE_CATALOGUE);
    expect(await db.query(`SELECT tablename, policyname, cmd, roles::text, qual FROM pg_policies`)).toEqual([
      { tablename: "organization_credits", policyname: "Authenticated users can view credits", cmd: "SELECT", roles: "{authenticated}", qual: "true" },
    ]);
    expect((await catalog(db)).rows).toEqual([{ orgs: 0, credits: 0, profiles: 0, users: 0, logs: 0 }]);

    // Nothing more than the baseline itself creates.
    const reference = await newDb(true);
    expect(await catalog(db)).toEqual(await catalog(reference));
  });

  it("changes nothing on a database that already has the baseline", async () => {
    const db = await newDb(true);
    const before = await catalog(db);
    const r = await seed({ databaseUrl: db.url, orgs: 0 });
    expect(r.baseline.created).toEqual([]);
    expect(await catalog(db)).toEqual(before);
  });

  it("leaves a live database that differs from the baseline as it is, and still seeds into it", async () => {
    const db = await newDb(true);
    await db.query(`ALTER TABLE organization_credits ADD COLUMN ai_credits_total integer NOT NULL DEFAULT 0`);
    await db.query(`UPDATE credit_actions SET credits_cost = 3 WHERE action_type = 'ai_assistant'`);
    await db.query(`DROP POLICY "Authenticated users can view credits" ON organization_credits`);
    await db.query(`CREATE POLICY own_org ON organization_credits FOR SELECT TO authenticated USING (false)`);
    await db.query(`CREATE OR REPLACE FUNCTION consume_credits_rpc(p_organization_id uuid, p_action_type text) RETURNS json
                    LANGUAGE sql AS $$ SELECT '{"success": false}'::json $$`);
    const before = await catalog(db);
    await seed({ databaseUrl: db.url, orgs: 0 });
    expect(await catalog(db)).toEqual(before);

    const r = await seed({ databaseUrl: db.url, orgs: 30, seed: 3 });
    expect(r.orgsAdded).toBe(30);
    const after = await catalog(db);
    expect({ ...after, rows: undefined }).toEqual({ ...before, rows: undefined });
  });
});

describe("seed: organizations", () => {
  it("is deterministic: the same seed gives identical organizations, ids and balances; another seed different ones", async () => {
    const [a, b] = await Promise.all([newDb(false), newDb(false)]);
    const ra = await seed({ databaseUrl: a.url, orgs: 300, seed: 42, anchor: ANCHOR, batchSize: 128 });
    const rb = await seed({ databaseUrl: b.url, orgs: 300, seed: 42, anchor: ANCHOR });
    expect(ra.orgsAdded).toBe(300);
    expect({ ...rb, seconds: 0, orgsPerSecond: 0 }).toEqual({ ...ra, seconds: 0, orgsPerSecond: 0 });
    const da = await dump(a);
    expect(da.orgs).toHaveLength(300);
    expect(da.profiles.length).toBeGreaterThan(0);
    expect(da.logs.length).toBeGreaterThan(0);
    expect(await dump(b)).toEqual(da);

    // Another seed into the same database: 300 more organizations, with slugs and ids of their own.
    const rc = await seed({ databaseUrl: b.url, orgs: 300, seed: 43, anchor: ANCHOR });
    expect(rc.orgsAdded).toBe(300);
    const d42 = await dump(b, "%-s42-%");
    const d43 = await dump(b, "%-s43-%");
    expect(d42.orgs).toHaveLength(300);
    expect(d43.orgs).toHaveLength(300);
    const ids42 = new Set(d42.orgs.map((o) => o.id));
    expect(d43.orgs.filter((o) => ids42.has(o.id))).toEqual([]);
    const balances = (d: typeof d42) => d.credits.map((c) => `${c.plan_name}/${c.total_credits}/${c.credits_remaining}`).sort();
    expect(balances(d43)).not.toEqual(balances(d42));
  });

  it("skips the organizations of a seed already present, so re-running adds nothing and a larger --orgs adds the tail", async () => {
    const db = await newDb(false);
    await seed({ databaseUrl: db.url, orgs: 200, seed: 9, anchor: ANCHOR });
    const first = await dump(db);

    const again = await seed({ databaseUrl: db.url, orgs: 200, seed: 9, anchor: ANCHOR });
    expect([again.orgsAdded, again.orgsSkipped, again.logs, again.profiles]).toEqual([
      0,
      200,
      { success: 0, failed: 0 },
      { user: 0, admin: 0, super_admin: 0 },
    ]);
    expect(await dump(db)).toEqual(first);

    const more = await seed({ databaseUrl: db.url, orgs: 250, seed: 9, anchor: ANCHOR });
    expect([more.orgsAdded, more.orgsSkipped]).toEqual([50, 200]);
    const grown = await dump(db);
    expect(grown.orgs).toHaveLength(250);
    expect(grown.orgs.filter((o) => first.orgs.some((f) => f.id === o.id))).toEqual(first.orgs);
    expect(grown.credits.filter((c) => first.credits.some((f) => f.organization_id === c.organization_id))).toEqual(first.credits);
  });

  it("covers every case the migration must handle from the first organizations on, then a realistic mix", async () => {
    const db = await newDb(false);
    const facts = async () => ({
      plans: (await db.query(`SELECT DISTINCT plan_name FROM organization_credits`)).map((r) => r.plan_name as string),
      trials: (
        await db.query(`SELECT count(*) FILTER (WHERE cycle_end_date >= now())::int AS active,
                                      count(*) FILTER (WHERE cycle_end_date < now())::int AS expired
                               FROM organization_credits WHERE is_trial`)
      )[0],
      negative: (await db.query(`SELECT count(*)::int AS n FROM organization_credits WHERE credits_remaining < 0`))[0].n,
      superAdmins: (await db.query(`SELECT count(*)::int AS n FROM profiles WHERE role = 'super_admin'`))[0].n,
      noProfile: (
        await db.query(`SELECT count(*)::int AS n FROM organizations o
                                  WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.organization_id = o.id)`)
      )[0].n,
      // Split-rule orgs whose 40/30/30 split of credits_remaining leaves units to rounding.
      remainders: (
        await db.query(
          `SELECT count(*)::int AS n FROM organization_credits
                                   WHERE lower(trim(plan_name)) <> ALL ($1::text[]) AND credits_remaining > 0
                                     AND floor(credits_remaining * 0.4) + 2 * floor(credits_remaining * 0.3) < credits_remaining`,
          [PUBLISHED],
        )
      )[0].n,
      spent: (await db.query(`SELECT count(*)::int AS n FROM organization_credits WHERE credits_remaining < total_credits`))[0].n,
      logs: await db.query(`SELECT success, count(*)::int AS n FROM credit_consumption_logs GROUP BY 1 ORDER BY 1`),
    });
    const wanted = [...PUBLISHED, " Premium", "STARTER ", "Professional", "", "free", "custom", "system admin", "legacy_gold"];

    await seed({ databaseUrl: db.url, orgs: SHOWCASE.length, seed: 7 });
    const small = await facts();
    expect(small.plans).toEqual(expect.arrayContaining(wanted));
    expect(small.trials.active).toBeGreaterThanOrEqual(1);
    expect(small.trials.expired).toBeGreaterThanOrEqual(1);
    expect(small.negative).toBe(1);
    expect(small.superAdmins).toBeGreaterThanOrEqual(1);
    expect(small.noProfile).toBeGreaterThanOrEqual(1);
    expect(small.remainders).toBeGreaterThanOrEqual(1);

    const r = await seed({ databaseUrl: db.url, orgs: 3000, seed: 7 });
    expect(r.orgsAdded).toBe(3000 - SHOWCASE.length);
    const big = await facts();
    expect(big.negative).toBe(1);
    expect(big.trials.expired).toBeGreaterThan(30);
    expect(big.trials.active).toBeGreaterThan(big.trials.expired);
    expect(big.noProfile).toBeGreaterThan(100);
    expect(big.remainders).toBeGreaterThan(100);
    expect(big.spent).toBeGreaterThan(1000);
    expect(big.plans.filter((p) => !wanted.includes(p)).length).toBeGreaterThan(0); // more unknown names
    expect(big.logs.map((l) => l.success)).toEqual([false, true]);
    expect(big.logs[1].n).toBeGreaterThan(big.logs[0].n);

    // The shape of each row: plausible for its plan, and consistent with v1.
    const perPlan = await db.query(
      `SELECT lower(trim(plan_name)) AS p, count(*)::int AS n, min(total_credits) AS lo, max(total_credits) AS hi,
                                           bool_and(is_trial) AS trial
                                    FROM organization_credits WHERE lower(trim(plan_name)) = ANY ($1::text[]) GROUP BY 1 ORDER BY 1`,
      [PUBLISHED],
    );
    expect(perPlan.filter((x) => x.p !== "enterprise" && x.hi !== x.lo)).toEqual([]);
    expect(perPlan.map((x) => [x.p, x.lo, x.trial])).toEqual([
      ["business", 9650, false],
      ["enterprise", 23200, false],
      ["premium", 23200, false],
      ["professional", 3800, false],
      ["starter", 1400, false],
      ["trial_14", 280, true],
    ]);
    expect((await db.query(`SELECT count(*)::int AS n FROM organization_credits WHERE is_trial AND lower(trim(plan_name)) <> 'trial_14'`))[0].n).toBe(0);
    expect((await db.query(`SELECT DISTINCT role FROM profiles ORDER BY 1`)).map((x) => x.role)).toEqual(["admin", "super_admin", "user"]);
    expect(
      (
        await db.query(`SELECT count(*)::int AS n FROM profiles p JOIN auth.users u USING (id)
                            WHERE u.email = p.email AND p.email LIKE 'user-s7-%@example.invalid'`)
      )[0].n,
    ).toBe((await db.query(`SELECT count(*)::int AS n FROM profiles`))[0].n);
    const actions = await db.query(`SELECT DISTINCT action_type FROM credit_consumption_logs ORDER BY 1`);
    expect(actions.map((a) => a.action_type)).toEqual(LIVE_CATALOGUE.map((a) => a.action_type));
    // A success consumed the action's cost; a refusal consumed nothing because the balance was below the cost.
    const bad = await db.query(`SELECT l.* FROM credit_consumption_logs l JOIN credit_actions a USING (action_type)
                                WHERE (l.success AND (l.credits_consumed <> a.credits_cost OR l.credits_remaining < 0))
                                   OR (NOT l.success AND (l.credits_consumed <> 0 OR l.credits_remaining >= a.credits_cost))`);
    expect(bad).toEqual([]);
    // Time runs one way: sign-up, then the cycle, then its consumption and the later profiles; nothing in the future.
    const [times] = await db.query(`SELECT
        (SELECT count(*)::int FROM organization_credits c JOIN organizations o ON o.id = c.organization_id
          WHERE o.created_at > c.cycle_start_date OR c.cycle_end_date <= c.cycle_start_date OR c.cycle_start_date > now()) AS cycles,
        (SELECT count(*)::int FROM credit_consumption_logs l JOIN organization_credits c USING (organization_id)
          WHERE l.created_at < c.cycle_start_date OR l.created_at > least(now(), c.cycle_end_date)) AS logs,
        (SELECT count(*)::int FROM profiles p JOIN organizations o ON o.id = p.organization_id
          WHERE p.created_at < o.created_at OR p.created_at > now()) AS profiles`);
    expect(times).toEqual({ cycles: 0, logs: 0, profiles: 0 });
    // The summary counts what the database holds.
    const stored = await db.query(
      `SELECT c.plan_name, count(*)::int AS n FROM organization_credits c JOIN organizations o ON o.id = c.organization_id
                                   WHERE substring(o.slug FROM '-s7-(\\d+)$')::int >= $1 GROUP BY 1`,
      [SHOWCASE.length],
    );
    expect(Object.fromEntries(stored.map((s) => [s.plan_name, s.n]))).toEqual(r.orgsPerPlan);
  });
});

describe("seed: the command line", () => {
  it("refuses a bad flag, a missing or malformed URL and a non-integer --orgs with one line and exit code 2", async () => {
    const cases: [string[], string][] = [
      [["--database-url", "postgres://x@127.0.0.1/db", "--orgs", "5", "--bogus"], "seed: unknown flag --bogus"],
      [["--orgs", "5"], "seed: --database-url is required"],
      [["--database-url", "not a url", "--orgs", "5"], "seed: --database-url: expected a postgres:// or postgresql:// connection string"],
      [["--database-url", "postgres://x@127.0.0.1/db", "--orgs", "1.5"], `seed: --orgs: expected an integer from 0 to 10,000,000, got "1.5"`],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({ code: 2, stderr: `${message} ${USAGE}\n`, stdout: "" });
    }
  });

  it("reports an unreachable database with exit code 2 and without its password", async () => {
    const r = await runCli(["--database-url", "postgres://seeder:hunter2-secret@127.0.0.1:1/guardian", "--orgs", "5"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "seed: cannot connect to the Guardian database at postgres://seeder:***@127.0.0.1:1/guardian: " +
        "connection refused (is the server running and listening there?) [ECONNREFUSED]\n",
    );
    expect(r.stderr + r.stdout).not.toContain("hunter2");
  });

  it("seeds from the command line, with progress on stderr and the summary on stdout", async () => {
    const db = await newDb(false);
    const r = await runCli(["--database-url", db.url, "--orgs", "40", "--seed", "5"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^seed: baseline created \(auth\.users, public\.organizations, .*\)\nseed: 40\/40 orgs \(100%\), [\d,]+ orgs\/s\n$/);
    expect(r.stdout).toMatch(/^seed: done: seed 5, 40 orgs added in [\d.]+ s/);
    expect(r.stdout).toContain("  'trial_14'");
    expect(r.stdout).toContain("negative balances: 1");
    expect((await db.query(`SELECT count(*)::int AS n FROM organizations WHERE slug LIKE '%-s5-%'`))[0].n).toBe(40);
  });

  it("parses --flag=value, refuses duplicates and out-of-range seeds", () => {
    expect(parseArgs(["--database-url=postgres://h/db", "--orgs=0"])).toEqual({ databaseUrl: "postgres://h/db", orgs: 0, seed: 1 });
    expect(() => parseArgs(["--database-url", "postgres://h/db", "--orgs", "1", "--orgs", "2"])).toThrow("--orgs given twice");
    expect(() => parseArgs(["--database-url", "postgres://h/db", "--orgs", "1", "--seed", "-1"])).toThrow(
      '--seed: expected an integer from 0 to 4294967295, got "-1"',
    );
    expect(() => parseArgs(["--database-url", "postgres://h/db", "--orgs", "1", "--seed", "4294967296"])).toThrow(
      '--seed: expected an integer from 0 to 4294967295, got "4294967296"',
    );
    expect(() => parseArgs(["--database-url", "postgres://h/db", "--orgs"])).toThrow("--orgs needs a value");
    expect(() => parseArgs(["--database-url", "postgres://h/db", "--orgs", "1", "extra"])).toThrow('unexpected argument "extra"');
  });
});
