/**
 * `npm run export -- --supabase <dir>` (issue 13, item 8): the program's SQL as one Supabase migration file.
 *
 * Two databases seeded alike: A migrated by the real engine (`pulumi up`, test/helpers/migration.ts), B by applying the
 * exported file the way Supabase applies a migration (the whole file in ONE transaction). The schema they end with
 * must be the same: every function's definition and ACL, every policy, RLS, trigger, column, constraint, index, view
 * and grant in public, guardian and guardian_rls, and the catalogue rows. Then the file is applied to A as well (a
 * project whose history gets the file after `pulumi up` ran): it applies cleanly, changes nothing the engine manages
 * (a refreshed preview shows no drift). The shape is the database's: a database of the CRM's real shape (user_role,
 * no is_trial) gets SQL rendered for it.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MigrationStep, migrationParts, MIGRATION_SUFFIX, stepHeading } from "../operations/export/supabaseMigration";
import { stepsOf } from "../lib/applyOrder";
import { SEED_SHAPE } from "../lib/shape";
import { parseConfig } from "../lib/config";
import { actAs, inTransaction, rolledBack } from "../lib/db";
import type { TestDb } from "./helpers/db";
import { changed, type Migrated, preview, seededStack, teardown, up, seededDb } from "./helpers/migration";
import { freshRealCrmDb } from "./helpers/realCrm";

const ROOT = path.resolve(__dirname, "..");
const ORGS = 60;
const SEED = 7; // seededStack's

function exportCli(args: string[]) {
  const r = spawnSync("node", ["-r", "ts-node/register/transpile-only", path.join(ROOT, "scripts", "export.ts"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Applies a migration file as Supabase does: every statement in one transaction. */
async function applyMigration(db: TestDb, file: string): Promise<void> {
  const c = await db.client();
  try {
    await inTransaction(c, () => c.query(fs.readFileSync(file, "utf8")));
  } finally {
    await c.end();
  }
}

const SCHEMAS = "ARRAY['public', 'guardian', 'guardian_rls']";

/** Everything about the schema the program makes, as comparable text, keyed by kind. */
async function schemaFacts(db: TestDb): Promise<Record<string, string[]>> {
  const q = async (sql: string) => (await db.query<{ x: string }>(sql)).map((r) => r.x).sort();
  return {
    functions: await q(`SELECT p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '') AS x
                          FROM pg_proc p WHERE p.pronamespace::regnamespace::text = ANY (${SCHEMAS}) AND p.prokind = 'f'`),
    policies: await q(`SELECT concat_ws(' | ', schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check) AS x
                         FROM pg_policies WHERE schemaname = ANY (${SCHEMAS})`),
    rls: await q(`SELECT c.oid::regclass::text || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity AS x
                    FROM pg_class c WHERE c.relnamespace::regnamespace::text = ANY (${SCHEMAS}) AND c.relkind = 'r'`),
    triggers: await q(`SELECT pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text AS x FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                        WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text = ANY (${SCHEMAS})`),
    columns: await q(`SELECT concat_ws(' ', table_schema, table_name, column_name, data_type, is_nullable, column_default) AS x
                        FROM information_schema.columns WHERE table_schema = ANY (${SCHEMAS})`),
    constraints: await q(`SELECT k.conrelid::regclass::text || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) || ' validated=' || k.convalidated AS x
                            FROM pg_constraint k WHERE k.connamespace::regnamespace::text = ANY (${SCHEMAS})`),
    indexes: await q(`SELECT i.indexrelid::regclass::text || ' ' || pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid AS x
                        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace::regnamespace::text = ANY (${SCHEMAS})`),
    views: await q(`SELECT c.oid::regclass::text || ' ' || md5(pg_get_viewdef(c.oid)) || ' ' || coalesce(array_to_string(c.reloptions, ','), '') AS x
                      FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace::regnamespace::text = ANY (${SCHEMAS})`),
    tableGrants: await q(`SELECT c.oid::regclass::text || ' ' || coalesce(c.relacl::text, 'default') AS x
                            FROM pg_class c WHERE c.relnamespace::regnamespace::text = ANY (${SCHEMAS}) AND c.relkind IN ('r', 'v', 'S')`),
    schemaGrants: await q(`SELECT nspname || ' ' || coalesce(nspacl::text, 'default') AS x FROM pg_namespace WHERE nspname = ANY (${SCHEMAS})`),
    defaultGrants:
      await q(`SELECT d.defaclrole::regrole::text || ' ' || coalesce(d.defaclnamespace::regnamespace::text, '') || ' ' || d.defaclobjtype::text || ' ' || d.defaclacl::text AS x
                              FROM pg_default_acl d`),
    // Rows without their timestamps (when they were written differs, what they say must not).
    catalogue: await q(`SELECT 'action ' || (to_jsonb(a) - 'created_at' - 'updated_at')::text AS x FROM public.credit_actions a
                        UNION ALL SELECT 'plan ' || (to_jsonb(p) - 'created_at' - 'updated_at')::text FROM guardian.plan_catalogue p
                        UNION ALL SELECT 'split ' || (to_jsonb(s) - 'created_at' - 'updated_at')::text FROM guardian.allocation_split s
                        UNION ALL SELECT 'cost ' || (to_jsonb(k) - 'created_at' - 'updated_at')::text FROM guardian.provider_costs k`),
  };
}

describe("npm run export -- --supabase: the program's SQL as one Supabase migration", () => {
  let engine: Migrated; // A: pulumi up
  let viaFile: TestDb; // B: the migration file
  let dir: string;
  let file: string;
  let exported: any;
  let engineFacts: Record<string, string[]>;

  beforeAll(async () => {
    engine = await seededStack(ORGS);
    const r = await up(engine.t);
    expect(r.summary.result).toBe("succeeded");
    engineFacts = await schemaFacts(engine.db);

    viaFile = await seededDb(ORGS, SEED, "gt_export");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-supabase-"));
    const out = exportCli(["--supabase", path.join(dir, "supabase", "migrations"), "--database-url", viaFile.url, "--version", "20260301120000", "--json"]);
    expect(out.code, out.stderr).toBe(0);
    exported = JSON.parse(out.stdout);
    file = exported.file;
    await applyMigration(viaFile, file);
  }, 600_000);

  afterAll(async () => {
    await teardown(engine);
    await viaFile?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("writes ONE file <dir>/<version>_guardian_credits.sql, for the shape it discovered", () => {
    expect(fs.readdirSync(path.join(dir, "supabase", "migrations"))).toEqual([`20260301120000${MIGRATION_SUFFIX}`]);
    expect(exported).toMatchObject({
      written: true,
      version: "20260301120000",
      shape: SEED_SHAPE,
      shapeSource: "discovered in the database, as go/no-go does",
    });
    expect(fs.readFileSync(file, "utf8")).toContain(
      "-- Database shape: profile role column profiles.role; trials by organization_credits.is_trial (discovered",
    );
  });

  it("holds the program's SQL in the program's order, with no statement Supabase's transaction would refuse", () => {
    const text = fs.readFileSync(file, "utf8");
    // The multi model's plan (lib/applyOrder.ts) without its data steps (backup, verification).
    const steps = stepsOf("multi")
      .filter((s): s is MigrationStep => s !== "backup" && s !== "verification")
      .map(stepHeading);
    expect(steps).toHaveLength(7);
    const at = steps.map((s) => text.indexOf(`\n-- ${s}\n`));
    expect(at.every((i) => i > 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(text).not.toMatch(/^\s*CREATE\s+INDEX\s+CONCURRENTLY/im);
    expect(text).toMatch(/^CREATE INDEX IF NOT EXISTS credit_consumption_logs_org_epoch_success_idx/m);
    expect(text).toMatch(/plain CREATE INDEX: the program builds it CONCURRENTLY outside a transaction/);
    expect(text).toMatch(/^-- generated, components\/tenantPolicies\.ts ownPoliciesSql|^-- \(generated, components\/tenantPolicies\.ts ownPoliciesSql\)/m);
    expect(text).toContain("NOT in it: the data steps of\n-- `pulumi up`: the backup");
    expect(text).not.toMatch(/^\s*(BEGIN|COMMIT)\s*;/im); // Supabase wraps the file in its own transaction
    // Every part the program applies, in order, and nothing else.
    const parts = migrationParts(parseConfig({ databaseUrl: "postgres://x@localhost/x", creditModel: "multi" }), SEED_SHAPE);
    let from = 0;
    for (const p of parts) {
      const i = text.indexOf(p.sql.trimEnd(), from);
      expect(i, p.source).toBeGreaterThanOrEqual(from);
      from = i;
    }
  });

  it("applied in one transaction to a fresh seeded database, gives the schema pulumi up gives: functions, policies, RLS, triggers, columns, constraints, indexes, views, grants, catalogue", async () => {
    const facts = await schemaFacts(viaFile);
    for (const kind of Object.keys(engineFacts)) expect(facts[kind], kind).toEqual(engineFacts[kind]);
    // The objects are there (v2 in place of v1, the batch function, the trigger, the views, the policies).
    const [o] = await viaFile.query(`SELECT to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2,
                                            to_regprocedure('public.consume_credits_rpc(uuid,text)') IS NULL AS v1_gone,
                                            to_regprocedure('public.consume_credits_batch(uuid,jsonb)') IS NOT NULL AS batch,
                                            to_regclass('public.plan_margins') IS NOT NULL AS margins,
                                            (SELECT count(*)::int FROM pg_trigger WHERE tgname = 'guardian_allocate_on_write') AS trigger,
                                            (SELECT count(*)::int FROM pg_policies WHERE policyname LIKE 'guardian\\_%') AS policies`);
    expect(o).toEqual({
      v2: true,
      v1_gone: true,
      batch: true,
      margins: true,
      trigger: 1,
      policies: engineFacts.policies.filter((p) => / guardian_/.test(p)).length,
    });
    expect(o.policies).toBeGreaterThan(0);
  });

  it("has no data steps: organizations stay unified (no backfill), nothing is backed up, and v2 serves them", async () => {
    const [r] = await viaFile.query(`SELECT count(*) FILTER (WHERE credit_model = 'multi')::int AS multi, count(*)::int AS total,
                                            (SELECT count(*)::int FROM guardian.backups) AS backups
                                       FROM public.organization_credits`);
    expect(r).toEqual({ multi: 0, total: ORGS, backups: 0 });
    const [{ org }] = await viaFile.query(
      `SELECT organization_id AS org FROM public.organization_credits WHERE credits_remaining >= 5 ORDER BY organization_id LIMIT 1`,
    );
    const c = await viaFile.client();
    try {
      const res = await rolledBack(c, async () => {
        await actAs(c, { role: "service_role" });
        return (await c.query(`SELECT public.consume_credits_rpc(p_organization_id => $1, p_action_type => 'ai_chat') AS r`, [org])).rows[0].r;
      });
      expect(res.success, JSON.stringify(res)).toBe(true);
    } finally {
      await c.end();
    }
  });

  it("applies again, unchanged, to the database pulumi up migrated (idempotent): a refreshed preview finds no drift", async () => {
    await applyMigration(engine.db, file);
    expect(await schemaFacts(engine.db)).toEqual(engineFacts);
    const p = await preview(engine.t, { refresh: true });
    expect(changed(p.changeSummary)).toEqual({});
  }, 300_000);

  it("an export that changes nothing writes nothing; a config change writes a new, later migration (secrets never read)", () => {
    const migrations = path.join(dir, "supabase", "migrations");
    const same = exportCli(["--supabase", migrations, "--database-url", viaFile.url, "--version", "20260301130000", "--json"]);
    expect(same.code, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ written: false, file });
    expect(same.stderr).toMatch(/unchanged: .*20260301120000_guardian_credits\.sql already holds this export; nothing written/);

    const settings = path.join(dir, "Pulumi.other.yaml");
    fs.writeFileSync(
      settings,
      [
        "config:",
        "  guardian:databaseUrl:",
        "    secure: v1:not-decryptable",
        "  guardian:audit:",
        "    retentionDays: 400",
        "encryptionsalt: v1:abc",
        "",
      ].join("\n"),
    );
    const other = exportCli(["--supabase", migrations, "--config-file", settings, "--database-url", viaFile.url, "--version", "20260301140000"]);
    expect(other.code, other.stderr).toBe(0);
    expect(fs.readdirSync(migrations).sort()).toEqual([`20260301120000${MIGRATION_SUFFIX}`, `20260301140000${MIGRATION_SUFFIX}`]);
    const text = fs.readFileSync(path.join(migrations, `20260301140000${MIGRATION_SUFFIX}`), "utf8");
    expect(text).toContain("guardian:audit.retentionDays = 400 written in");
    expect(text).toContain("DEFAULT '400 days'");
    expect(text).not.toContain("not-decryptable");
  });

  it("refuses what it cannot do, naming it: a file as the folder, both --stack and --config-file, a database it cannot read", () => {
    const notDir = exportCli(["--supabase", path.join(ROOT, "package.json")]);
    expect(notDir.code).toBe(2);
    expect(notDir.stderr).toMatch(/--supabase: expected a directory; this is a file/);
    const both = exportCli(["--supabase", dir, "--stack", "staging", "--config-file", path.join(ROOT, "Pulumi.staging.yaml")]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--stack and --config-file conflict/);
    const down = exportCli(["--supabase", dir, "--database-url", "postgres://postgres:pw-in-url@127.0.0.1:1/x"]);
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(/cannot connect/);
    expect(down.stderr).not.toContain("pw-in-url");
  });
});

describe("npm run export renders the SQL for the database's shape", () => {
  let crm: TestDb;
  let dir: string;
  beforeAll(async () => {
    crm = await freshRealCrmDb({ orgs: 30, seed: 5 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-supabase-crm-"));
  }, 300_000);
  afterAll(async () => {
    await crm?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the CRM's real shape (profiles.user_role, no is_trial): user_role and trial plan names in the SQL, no is_trial column", () => {
    const r = exportCli(["--supabase", dir, "--database-url", crm.url, "--version", "20260302000000", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.shape).toEqual({ profileRoleColumn: "user_role", trial: { plans: ["trial_14"] } });
    const text = fs.readFileSync(out.file, "utf8");
    expect(text).toContain("-- Database shape: profile role column profiles.user_role; trials by plan name (trial_14)");
    expect(text).toMatch(/\bp\.user_role\b/);
    expect(text).toContain("= ANY (ARRAY['trial_14']::text[])"); // trials by plan name (lib/shape.ts isTrialSql)
    expect(text).not.toMatch(/\b(oc|o|c|r)\.is_trial\b/); // no read of a column the database lacks
    expect(text).not.toMatch(/\{\{[^}]*\}\}/); // every shape token rendered
  });

  it("and that file applies cleanly to the CRM's database in one transaction (its live v1 replaced, its foreign policies dropped)", async () => {
    const [file] = fs.readdirSync(dir).map((f) => path.join(dir, f));
    await applyMigration(crm, file);
    const [o] = await crm.query(`SELECT to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2,
                                        pg_get_functiondef('guardian_rls.is_super_admin()'::regprocedure) LIKE '%user_role%' AS reads_user_role,
                                        (SELECT count(*)::int FROM pg_policies WHERE schemaname = 'public' AND policyname NOT LIKE 'guardian\\_%'
                                            AND tablename IN ('organizations', 'profiles', 'organization_credits', 'credit_actions', 'credit_consumption_logs')) AS foreign_policies`);
    expect(o).toEqual({ v2: true, reads_user_role: true, foreign_policies: 0 });
  });
});
