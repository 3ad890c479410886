/**
 * The battlefield of the adversarial suite (issue 12): a database migrated to multi by the project's own SQL, applied
 * directly (no Pulumi engine per test), in the order of the components:
 *
 *   baseline -> the program's SQL in the order of safety (lib/applyOrder.ts: credit schema, catalogue, audit, tenancy
 *   with foreign policies dropped, functions, margins; rendered as the Supabase migration export renders it,
 *   operations/export/supabaseMigration.ts) -> organizations and users -> the Backfill's allocation rule and trigger
 *   -> a Backup taken by the real provider (providers/backup.ts: a guardian_backup_* schema and an on-disk export).
 *
 * Before the program runs, the API roles hold Supabase's grants: ALL on public's tables, CREATE on public for service_role.
 *
 * Organizations: A and B (multi, every pool stocked), with a member, an admin and (in a third org S) a super_admin.
 * Attacks act as Supabase's real roles (SET ROLE anon | authenticated | service_role + request.jwt.claims), through
 * harness/db.ts asUser or `session` below. `state()` fingerprints everything an attack could change, so a test
 * asserts both what was refused and that nothing changed.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Client } from "pg";
import { BACKUP_TABLES } from "../../components/backup";
import { parseConfig } from "../../lib/config";
import { redactUrl } from "../../lib/db";
import { SEED_SHAPE } from "../../lib/shape";
import { type MigrationPart, migrationParts } from "../../operations/export/supabaseMigration";
import { loadSql } from "../../lib/sql";
import { backupProvider } from "../../providers/backup";
import { freshDb, type TestDb } from "../helpers/db";
import { applySql, makeOrg, makeUser } from "../helpers/engine";

export type Role = "anon" | "authenticated" | "service_role";
export interface Who {
  role: Role;
  sub?: string;
}

export interface Battlefield {
  db: TestDb;
  org: { A: string; B: string; S: string };
  user: { memberA: string; adminA: string; memberB: string; superAdmin: string };
  backupId: string;
  exportRoot: string;
  exportDir: string;
  manifestPath: string;
  drop(): Promise<void>;
}

/** Pools every org starts with (large enough for any single attack to be visible). */
export const POOLS_AT_START = { ai: 500, whatsapp: 300, email: 1000, sms: 50 };

/** Each part in its own transaction; an error names the part's source. */
async function applyParts(db: TestDb, parts: MigrationPart[]): Promise<void> {
  const c = await db.client();
  try {
    for (const p of parts) await applySql(c, p.source, p.sql);
  } finally {
    await c.end();
  }
}

export async function battlefield(prefix = "adv"): Promise<Battlefield> {
  const db = await freshDb({ prefix });
  // Supabase's own grants, before the program runs: ALL on public's tables to its three API roles (TRIGGER and
  // TRUNCATE included) and CREATE on schema public to service_role. The program revokes what it must; attacks meet
  // what is left, as on Supabase.
  await db.query(`GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
                  GRANT CREATE ON SCHEMA public TO service_role`);
  // The program's SQL in the program's order (lib/applyOrder.ts), as the Supabase migration export renders it for
  // the seed's shape, each part in its own transaction; the backfill's objects after the organizations below.
  const parts = migrationParts(parseConfig({ databaseUrl: db.url }), SEED_SHAPE);
  await applyParts(
    db,
    parts.filter((p) => p.step !== "backfill"),
  );

  const org = {
    A: await makeOrg(db, { model: "multi", plan: "starter", totalCredits: 1000, creditsRemaining: 1000, pools: POOLS_AT_START }),
    B: await makeOrg(db, { model: "multi", plan: "starter", totalCredits: 1000, creditsRemaining: 1000, pools: POOLS_AT_START }),
    S: await makeOrg(db, { model: "multi", plan: "starter", totalCredits: 1000, creditsRemaining: 1000, pools: POOLS_AT_START }),
  };
  const user = {
    memberA: await makeUser(db, org.A, "user"),
    adminA: await makeUser(db, org.A, "admin"),
    memberB: await makeUser(db, org.B, "user"),
    superAdmin: await makeUser(db, org.S, "super_admin"),
  };
  // Some history: a consumption per org (as the service would make it), so logs and the backup hold rows.
  for (const o of Object.values(org)) {
    const [{ r }] = await db.query(`SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, [o, `setup-${o}`]);
    if (!r.success) throw new Error(`fixture: setup consumption failed: ${JSON.stringify(r)}`);
  }

  // The backfill's allocation rule and write trigger, as the Backfill component installs them.
  await applyParts(
    db,
    parts.filter((p) => p.step === "backfill"),
  );

  // A backup taken by the real provider code (no engine): the guardian_backup_* schema and the on-disk export.
  const exportRoot = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-adv-exports-"));
  const { outs } = await backupProvider.create!({
    databaseUrl: db.url,
    exportRoot,
    tables: BACKUP_TABLES,
    databaseLabel: redactUrl(db.url),
    bootstrapSql: loadSql("schema/01_guardian_schema.sql").text,
  });
  return {
    db,
    org,
    user,
    backupId: outs.backupId,
    exportRoot,
    exportDir: outs.exportDir,
    manifestPath: outs.manifestPath,
    async drop() {
      fs.rmSync(exportRoot, { recursive: true, force: true });
      await db.drop();
    },
  };
}

/**
 * A session that looks like a Supabase request, kept open (for multi-statement attacks and temporary objects):
 * BEGIN, request.jwt.claims, SET LOCAL ROLE. Notices the server sends (RAISE NOTICE) are collected.
 */
export async function session(db: TestDb, who: Who): Promise<{ c: Client; notices: string[]; end(commit?: boolean): Promise<void> }> {
  const c = await db.client();
  const notices: string[] = [];
  c.on("notice", (n: any) => notices.push(`${String(n?.message ?? n)}${n?.where ? ` [where: ${String(n.where).replace(/\s+/g, " ")}]` : ""}`));
  await c.query("BEGIN");
  await c.query("SELECT set_config('request.jwt.claims', $1, true)", [JSON.stringify(who.sub ? { sub: who.sub, role: who.role } : { role: who.role })]);
  await c.query(`SET LOCAL ROLE ${who.role}`);
  return {
    c,
    notices,
    async end(commit = true) {
      try {
        await c.query(commit ? "COMMIT" : "ROLLBACK");
      } catch {
        await c.query("ROLLBACK").catch(() => undefined);
      } finally {
        await c.end();
      }
    },
  };
}

/** Runs one statement as `who` in its own transaction (committed if it succeeds); the error if it is refused. */
export async function attempt(db: TestDb, who: Who, sql: string, params: unknown[] = []): Promise<{ rows?: any[]; error?: Error & { code?: string } }> {
  const s = await session(db, who);
  try {
    const r = await s.c.query(sql, params as any[]);
    await s.end(true);
    return { rows: r.rows };
  } catch (e: any) {
    await s.end(false);
    return { error: e };
  }
}

/** The error of a refused statement (fails the test if it went through). */
export async function refused(db: TestDb, who: Who, sql: string, params: unknown[] = []): Promise<Error & { code?: string }> {
  const r = await attempt(db, who, sql, params);
  if (!r.error) throw new Error(`expected the attack to be refused, but it went through: ${sql} -> ${JSON.stringify(r.rows)}`);
  return r.error;
}

/** The tables an attack could change, by name: every row of each, fingerprinted; plus the backup schemas. */
const WATCHED = [
  "auth.users",
  "public.organizations",
  "public.profiles",
  "public.organization_credits",
  "public.credit_actions",
  "public.credit_consumption_logs",
  "guardian.migration_journal",
  "guardian.idempotency_keys",
  "guardian.backups",
  "guardian.erasure_key",
  "guardian.plan_catalogue",
  "guardian.provider_costs",
  "guardian.allocation_split",
  "guardian.backfill_anomalies",
];

export interface State {
  rows: Record<string, number>;
  md5: Record<string, string>;
  /** Balances per org: credits_remaining and every pool, as stored. */
  balances: Record<string, Record<string, number | string>>;
}

/** Everything an attack could change, read as the owner. */
export async function state(db: TestDb): Promise<State> {
  const backupTables = await db.query<{ t: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname LIKE 'guardian\\_backup\\_%' ORDER BY 1`,
  );
  const rows: Record<string, number> = {};
  const md5: Record<string, string> = {};
  for (const t of [...WATCHED, ...backupTables.map((x) => x.t)]) {
    const [{ present }] = await db.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [t]);
    if (!present) continue;
    const [r] = await db.query(`SELECT count(*)::int AS n, coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') AS m FROM ${t} x`);
    rows[t] = r.n;
    md5[t] = r.m;
  }
  const balances: State["balances"] = {};
  for (const b of await db.query(
    `SELECT organization_id::text AS id, credits_remaining, credit_model, allocation_epoch, ai_credits_available AS ai,
            whatsapp_credits_available AS whatsapp, email_credits_available AS email, sms_credits_available AS sms
       FROM public.organization_credits ORDER BY 1`,
  )) {
    const { id, ...rest } = b;
    balances[id] = rest;
  }
  return { rows, md5, balances };
}

export const uuid = () => crypto.randomUUID();
