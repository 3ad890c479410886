/**
 * The program's SQL as ONE Supabase migration file (`npm run export -- --supabase <dir>`), for a project whose schema
 * history lives in supabase/migrations: `supabase db diff`, branching and `supabase db reset` then see the schema
 * `pulumi up` makes.
 *
 * The file holds what the multi model's SqlObjects apply, rendered for the database's shape (lib/shape.ts) exactly as
 * the components render it, in the order the program applies it (lib/applyOrder.ts, the multi model's plan; the data
 * steps, backup and verification, put nothing in it):
 *
 *   1. credit schema      components/creditSchema.ts CREDIT_SCHEMA_OBJECTS (the internal schema, additive columns,
 *                         validated CHECKs, the consumption-log index)
 *   2. catalogue          lib/catalogueSql.ts, generated from guardian:actions (prices set, as in the multi model) and
 *                         guardian:plans / split / providerCosts
 *   3. audit              sql/audit: append-only triggers, the retention purge (guardian:audit.retentionDays written
 *                         in, components/audit.ts renderPurgeSql), the erasure
 *   4. tenancy            sql/tenancy: helpers, grants, the profiles guard, then per table and command the generated ownPoliciesSql prefix
 *                         (components/tenantPolicies.ts) and the policy file, then the RLS switches
 *   5. functions          components/creditFunctions.ts CREDIT_FUNCTIONS (v2 replaces v1), then the trial calls the
 *                         program runs in the installing transaction (sql/verification/trial_calls.sql: they always
 *                         roll back, and an error fails the migration, so a function that would break never goes in)
 *   6. backfill objects   the allocation function and the allocate-on-write trigger (not the backfill run)
 *   7. margins            the plan and action margin views
 *
 * What it is not: the data steps of `pulumi up`. No backup (and so no restore check, and nothing for a rollback to
 * restore v1 from), no backfill run (organizations stay unified until a backfill flips them; v2 serves both), no
 * verification. Supabase runs a migration file in one transaction: the consumption-log index, which the program builds
 * CONCURRENTLY outside a transaction, is written as a plain CREATE INDEX (it locks the log against writes while it
 * builds). Every statement is idempotent (CREATE OR REPLACE, IF NOT EXISTS, DROP ... IF EXISTS), so the file also
 * applies cleanly to a database `pulumi up` already migrated.
 *
 * The text is deterministic (no time, no commit in it): the same program, config and shape give the same file, so an
 * export that changes nothing writes nothing.
 */
import * as fs from "fs";
import * as path from "path";
import { ADDITIVE_COLUMNS, CREDIT_SCHEMA_OBJECTS } from "../../components/creditSchema";
import { AUDIT_FILES, renderPurgeSql } from "../../components/audit";
import { CREDIT_FUNCTIONS } from "../../components/creditFunctions";
import { MARGINS_FILE } from "../../components/margins";
import { ownPoliciesSql, POLICY_COMMANDS, tableFiles, TENANCY_DIR } from "../../components/tenantPolicies";
import { actionCatalogueSql, planCatalogueSql } from "../../lib/catalogueSql";
import type { GuardianConfig } from "../../lib/config";
import { type DatabaseShape, describeShape } from "../../lib/shape";
import { loadSql, sha256, SQL_ROOT } from "../../lib/sql";
import { TENANT_TABLES } from "../../lib/tenantTables";
import { type Step, stepsOf } from "../../lib/applyOrder";

/** The steps of the plan that put SQL in the file (the data steps put none). */
export type MigrationStep = Exclude<Step, "backup" | "verification" | "rollback">;

/** One piece of the file: the step it belongs to, where it comes from (a file under sql/, or what it was generated
 *  from) and its SQL. */
export interface MigrationPart {
  step: MigrationStep;
  source: string;
  sql: string;
}

/** The heading of a step's parts in the file: the backfill puts in its objects, not its run. */
export const stepHeading = (step: MigrationStep): string => (step === "backfill" ? "backfill objects" : step);

/** The consumption-log index without CONCURRENTLY (a migration runs in a transaction). Throws if the file changed shape. */
export function plainIndexSql(text: string, file: string): string {
  const re = /CREATE\s+INDEX\s+CONCURRENTLY\s+/i;
  if (!re.test(text)) throw new Error(`sql/${file}: expected CREATE INDEX CONCURRENTLY (the migration writes its plain variant)`);
  return text.replace(re, "CREATE INDEX ");
}

/** Every part, in the order the program applies them (lib/applyOrder.ts, multi model). */
export function migrationParts(config: GuardianConfig, shape: DatabaseShape): MigrationPart[] {
  const parts: MigrationPart[] = [];
  const file = (step: MigrationStep, f: string) => parts.push({ step, source: `sql/${f}`, sql: loadSql(f, shape).text });
  const build: Record<MigrationStep, () => void> = {
    "credit schema": () => creditSchemaParts(parts, shape),
    catalogue: () => catalogueParts(parts, config),
    audit: () => auditParts(parts, config, shape, file),
    tenancy: () => tenancyParts(parts, shape, file),
    functions: () => functionsParts(parts, shape, file),
    backfill: () => {
      file("backfill", "backfill/01_allocate_pools.sql");
      file("backfill", "backfill/02_allocation_trigger.sql");
    },
    margins: () => file("margins", MARGINS_FILE),
  };
  for (const step of stepsOf("multi")) if (step in build) build[step as MigrationStep]();
  return parts;
}

type AddFile = (step: MigrationStep, f: string) => void;

function creditSchemaParts(parts: MigrationPart[], shape: DatabaseShape): void {
  for (const s of CREDIT_SCHEMA_OBJECTS) {
    const text = loadSql(s.file, shape).text;
    if (s.transaction === false) {
      const names = ADDITIVE_COLUMNS.credit_consumption_logs.indexes.join(", ");
      parts.push({
        step: "credit schema",
        source:
          `sql/${s.file} (plain CREATE INDEX: the program builds it CONCURRENTLY outside a transaction; a Supabase ` +
          `migration runs in one, so here the build locks public.credit_consumption_logs against writes while it runs; ${names})`,
        sql: plainIndexSql(text, s.file),
      });
    } else parts.push({ step: "credit schema", source: `sql/${s.file}`, sql: text });
  }
}

function catalogueParts(parts: MigrationPart[], config: GuardianConfig): void {
  parts.push({
    step: "catalogue",
    source: "generated from guardian:actions (lib/catalogueSql.ts, prices as in the multi model)",
    sql: actionCatalogueSql(config, { setPrices: true }),
  });
  parts.push({
    step: "catalogue",
    source: "generated from guardian:plans, guardian:split, guardian:providerCosts (lib/catalogueSql.ts)",
    sql: planCatalogueSql(config),
  });
}

function auditParts(parts: MigrationPart[], config: GuardianConfig, shape: DatabaseShape, file: AddFile): void {
  file("audit", AUDIT_FILES.appendOnly);
  parts.push({
    step: "audit",
    source: `sql/${AUDIT_FILES.purge} (guardian:audit.retentionDays = ${config.audit.retentionDays} written in)`,
    sql: renderPurgeSql(loadSql(AUDIT_FILES.purge, shape).text, config.audit.retentionDays),
  });
  file("audit", AUDIT_FILES.erasure);
}

function tenancyParts(parts: MigrationPart[], shape: DatabaseShape, file: AddFile): void {
  file("tenancy", `${TENANCY_DIR}/00_helpers.sql`);
  file("tenancy", `${TENANCY_DIR}/01_roles_grants.sql`);
  file("tenancy", `${TENANCY_DIR}/02_profiles_guard.sql`);
  const entries = fs.readdirSync(path.join(SQL_ROOT, TENANCY_DIR));
  const plans = TENANT_TABLES.map((t) => ({ table: t.table, files: tableFiles(t.table, entries) }));
  for (const { table, files } of plans) {
    for (const command of POLICY_COMMANDS) {
      parts.push({
        step: "tenancy",
        source: `sql/${files[command]} (after ownPoliciesSql: other policies on ${table} for ${command.toUpperCase()} or ALL are dropped)`,
        sql: ownPoliciesSql(table, command) + loadSql(files[command], shape).text,
      });
    }
  }
  for (const { files } of plans) file("tenancy", files.rls);
}

function functionsParts(parts: MigrationPart[], shape: DatabaseShape, file: AddFile): void {
  for (const f of CREDIT_FUNCTIONS) file("functions", f.file);
  parts.push({
    step: "functions",
    source: "sql/verification/trial_calls.sql (the program's check of the installed functions: calls that always roll back; an error fails the migration)",
    sql: loadSql("verification/trial_calls.sql", shape).text,
  });
}

export interface MigrationFile {
  text: string;
  parts: MigrationPart[];
  /** sha256 of the SQL of every part, in order (the file's identity, whatever its header says). */
  sqlSha256: string;
}

const comment = (s: string) =>
  s
    .split("\n")
    .map((l) => (l ? `-- ${l}` : "--"))
    .join("\n");

/** The migration file's text. `shapeSource` and `configSource` say where the shape and the config came from. */
export function supabaseMigration(config: GuardianConfig, shape: DatabaseShape, o: { shapeSource: string; configSource: string }): MigrationFile {
  const parts = migrationParts(config, shape);
  const sqlSha256 = sha256(parts.map((p) => p.sql).join("\n"));
  const header = comment(
    [
      "guardian-credits: the program's SQL as one Supabase migration (npm run export -- --supabase <dir>).",
      "Generated; do not edit. Export again after a change of the program, its config or the database's shape: an",
      "unchanged export writes no new file.",
      "",
      `Database shape: ${describeShape(shape).replace(/^shape: /, "")} (${o.shapeSource}).`,
      `Config: ${o.configSource}.`,
      `SQL sha256: ${sqlSha256}`,
      "",
      "What `pulumi up` applies with guardian:creditModel multi, in its order: credit schema, catalogue, audit, tenancy,",
      "functions (with their trial calls), the backfill's function and trigger, margins. NOT in it: the data steps of",
      "`pulumi up`: the backup (and its restore check: nothing here could bring v1 back), the backfill run (organizations",
      "stay unified until a backfill flips them; consume_credits_rpc v2 serves both models) and the verification. On a",
      "database with customer data, migrate with `pulumi up`; this file keeps supabase/migrations in step with it",
      "(`supabase db diff`, branches, `supabase db reset`).",
      "",
      "Supabase runs a migration in one transaction, so the consumption-log index is a plain CREATE INDEX here (the",
      "program builds it CONCURRENTLY). Every statement is idempotent: the file applies to a database `pulumi up`",
      "already migrated too (or record it as applied: supabase migration repair --status applied <version>).",
    ].join("\n"),
  );
  const body: string[] = [
    header,
    "",
    "-- Serialised with the program's own DDL (a pulumi up running at the same time), and no long wait for a lock:",
    "-- the transaction fails instead of queueing the application's queries behind it.",
    "DO $lock$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('guardian-credits:ddl')); END $lock$;",
    `SET LOCAL lock_timeout = '${Math.floor(config.ddl.lockTimeoutMs)}ms';`,
  ];
  let step = "";
  for (const [i, p] of parts.entries()) {
    if (p.step !== step) {
      step = p.step;
      body.push("", `-- ${"=".repeat(110)}`, `-- ${stepHeading(p.step)}`, `-- ${"=".repeat(110)}`);
    }
    body.push("", `-- [${i + 1}/${parts.length}] ${p.source}`, p.sql.trimEnd());
    // Each part is complete; a last statement without its semicolon would run into the next part.
    if (!/;\s*(--[^\n]*\s*)*$/.test(p.sql.trimEnd())) body.push(";");
  }
  body.push(
    "",
    "-- The program journals every object it applies; this migration journals itself once.",
    "INSERT INTO guardian.migration_journal (step, object_name, details)",
    `VALUES ('apply', 'supabase migration (npm run export)', jsonb_build_object('sqlSha256', '${sqlSha256}', 'parts', ${parts.length}));`,
    "",
  );
  return { text: body.join("\n"), parts, sqlSha256 };
}

export const MIGRATION_SUFFIX = "_guardian_credits.sql";

/** A Supabase migration version: the UTC time as YYYYMMDDHHMMSS. */
export function migrationVersion(d = new Date()): string {
  return d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

export interface WriteResult {
  /** The file holding this export: a new one, or the earlier export with the same text. */
  file: string;
  written: boolean;
  /** The newest migration of the folder, when it is not older than the version given. */
  notAfter?: string;
}

/**
 * Writes `<dir>/<version>_guardian_credits.sql` unless the newest earlier export in `dir` has the same text (then
 * nothing is written). The folder is created if missing.
 */
export function writeSupabaseMigration(dir: string, text: string, version = migrationVersion()): WriteResult {
  if (!/^\d{14}$/.test(version)) throw new Error(`migration version "${version}": expected YYYYMMDDHHMMSS`);
  fs.mkdirSync(dir, { recursive: true });
  const migrations = fs
    .readdirSync(dir)
    .filter((f) => /^\d+_.*\.sql$/.test(f))
    .sort();
  const ours = migrations.filter((f) => f.endsWith(MIGRATION_SUFFIX));
  const latest = ours[ours.length - 1];
  if (latest && fs.readFileSync(path.join(dir, latest), "utf8") === text) return { file: path.join(dir, latest), written: false };
  const file = path.join(dir, `${version}${MIGRATION_SUFFIX}`);
  if (fs.existsSync(file)) throw new Error(`${file} exists with other content: give another version`);
  const newest = migrations[migrations.length - 1];
  fs.writeFileSync(file, text);
  return { file, written: true, ...(newest && newest.split("_")[0] >= version ? { notAfter: newest } : {}) };
}
