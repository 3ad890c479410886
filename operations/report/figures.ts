/**
 * The migration report's figures, queried from the database (and the on-disk backup export) at report time.
 *
 * Nothing here is copied from stack outputs or from a template: each figure is a query, so a report cannot say
 * "multi-credit deployed" about a database that is still unified (facts.md, "What went wrong", 1). Stack facts
 * (name, update version, outputs) are added by buildReport (./index.ts), which also cross-checks outputs against these.
 *
 * Every query tolerates a database that is not (or no longer) migrated: a missing object is reported as missing.
 *
 * databaseFigures composes one exported step per figure group, each runnable alone on a client: serverVersion,
 * catalogueFigures, migrationColumns, organizationFigures (per model and rule), conservationFigures, anomalyFigures,
 * backupFigures, functionFigures, policyFigures (and RLS), consumptionFigures (the logs), marginFigures, chartFigures
 * (pools before and after) and accessFigures (shape, isolation, v1).
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import type { Client } from "pg";
import { POOLS, type Pool, type GuardianConfig } from "../../lib/config";
import { isolationMatrix, ISOLATION_TABLES, type IsolationMatrix } from "../../lib/isolation";
import { accessMismatches } from "../../lib/access";
import { type AccessMatrix, probeAccess } from "../../lib/accessProbe";
import { planMargins } from "../../lib/margins";
import { discoverShape } from "../../lib/shape";
import { orgsWithoutCredits } from "../../lib/backfillPlan";
import { v1Facts } from "../../lib/v1Behaviour";

export type PoolAmounts = Record<Pool, number>;

export interface BackupTableFigures {
  /** Rows in the backup schema's copy, counted now. */
  rowsInSchema: number | null;
  /** Rows the backup recorded (guardian.backups) and the manifest states. */
  rowsRecorded: number | null;
  rowsInManifest: number | null;
  /** Row checksum (sum of md5 prefixes of each row) recomputed now, recorded, and in the manifest. */
  checksumInSchema: string | null;
  checksumRecorded: string | null;
  checksumInManifest: string | null;
  /** sha256 of the export file: as the manifest states it, and recomputed from the file now (null if unreachable). */
  fileSha256InManifest: string | null;
  fileSha256Now: string | null;
  /** Every available pair agrees. */
  consistent: boolean;
}

export interface BackupFigures {
  backupId: string;
  schemaName: string;
  schemaPresent: boolean;
  createdAt: string;
  exportDir: string | null;
  /** Whether manifest.json could be read from this machine. */
  manifestReadable: boolean;
  restoreVerified: boolean;
  verifiedAt: string | null;
  tables: Record<string, BackupTableFigures>;
  /** md5 of each consume_credits_rpc definition the backup recorded (what rollback restores). */
  recordedFunctionMd5: Record<string, string>;
}

export interface RuleFigures {
  orgs: number;
  multi: number;
  unified: number;
}

export interface ConservationFigures {
  /** Organizations in the multi model under this rule. */
  orgs: number;
  /** Pool totals equal the rule (plan: the allocation; split: they add up to total_credits, negative as 0). */
  totalsConserved: number;
  /** available + consumed since allocation equals the initial available (plan: the allocation; split: credits_remaining). */
  availableConserved: number;
  /** Up to 5 organizations that fail either check. */
  violations: string[];
}

export interface Anomaly {
  organizationId: string;
  kind: string;
  value: number | null;
  epoch: number | null;
}

export interface FunctionFigure {
  signature: string;
  definitionMd5: string;
  securityDefiner: boolean;
  config: string[];
  /** The backup recorded this exact definition (i.e. this is v1 as it was). */
  matchesBackupV1: boolean;
}

export interface PolicyFigure {
  table: string;
  policy: string;
  command: string;
  roles: string[];
  permissive: string;
  md5: string;
}

export interface PoolConsumption {
  /** Successful calls that debited this pool (multi model), and the credits they debited. */
  successes: number;
  credits: number;
  /** Refused calls for an action that requires this pool. */
  refusals: number;
}

export interface ConsumptionFigures {
  since: string;
  perPool: Record<Pool, PoolConsumption>;
  successes: number;
  refusals: number;
  /** Successes served by each model (unified: an organization not yet migrated, or after rollback). */
  successesByModel: Record<string, number>;
  /** Unified cost (credits_cost x quantity) of the successes: what rollback subtracts. */
  unifiedCost: number;
  refusalsByCode: Record<string, number>;
}

export interface MarginFigure {
  plan: string;
  priceEur: number | null;
  costEur: number | null;
  marginPct: number | null;
  belowTarget: boolean | null;
}

export interface ChartFigures {
  /** Per rule: unified credits_remaining summed over its organizations in the backup (negative counted as 0). */
  before: Record<string, number>;
  /** Per rule: per-pool available credits summed over its organizations in the multi model now. */
  after: Record<string, PoolAmounts>;
}

export interface DatabaseFigures {
  serverVersion: string;
  /** Organizations per credit_model now (all "unified" when the column does not exist). */
  orgsByModel: Record<string, number>;
  /** Credit rows (public.organization_credits): the organizations the credits are kept for. */
  orgsTotal: number;
  /** public.organizations without a credit row (their calls get NO_CREDIT_ACCOUNT). */
  orgsWithoutCredits: number;
  migrated: boolean;
  catalogueSource: "guardian.plan_catalogue" | "config";
  backup: BackupFigures | null;
  orgsPerRule: Record<string, RuleFigures>;
  conservation: Record<string, ConservationFigures>;
  anomalies: Anomaly[];
  functions: FunctionFigure[];
  policies: PolicyFigure[];
  /** md5 over every policy's md5, in order: one hash for "the policies". */
  policiesMd5: string;
  rlsEnabled: Record<string, boolean>;
  consumption: ConsumptionFigures | null;
  margins: { source: "public.plan_margins" | "lib/margins.ts"; target: number; plans: MarginFigure[] };
  chart: ChartFigures;
  /** Tenant isolation as sampled real users and anon see it now (lib/isolation.ts); null when the shape is unknown. */
  isolation: { matrix: IsolationMatrix; violations: string[] } | null;
  /** The access matrix as the application's roles find it now (lib/accessProbe.ts, read-only), each cell against
   * what the program's policies allow (lib/access.ts programAccess); null when the shape is unknown. */
  access: { matrix: AccessMatrix; mismatches: string[] } | null;
  /** Organizations served by the split rule, per stored plan name (trim + lower-case). */
  splitPlanNames: Record<string, number>;
  /** What the installed consume_credits_rpc(uuid,text) does wrong (lib/v1Behaviour.ts), when it is a v1-shaped function. */
  v1Weaknesses: string[];
}

const REPORTED_TABLES = ["organizations", "profiles", "organization_credits", "credit_actions", "credit_consumption_logs"];
const ROW_CHECKSUM = (rel: string) =>
  `SELECT count(*)::bigint AS n, coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text AS checksum FROM ${rel} t`;
const IDENT = /^[a-z_][a-z0-9_]*$/;

async function one<T = any>(c: Client, sql: string, params: unknown[] = []): Promise<T> {
  return (await c.query(sql, params as any[])).rows[0] as T;
}

async function columnsOf(c: Client, schema: string, table: string): Promise<Set<string>> {
  const r = await c.query(`SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, [`${schema}.${table}`]);
  return new Set(r.rows.map((x: any) => x.attname));
}

async function exists(c: Client, rel: string): Promise<boolean> {
  return (await one(c, `SELECT to_regclass($1) IS NOT NULL AS p`, [rel])).p;
}

function sha256File(file: string): string | null {
  try {
    return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
  } catch {
    return null;
  }
}

/** The backup to report: the one the stack names, else the latest recorded. */
export async function backupFigures(c: Client, backupId?: string): Promise<BackupFigures | null> {
  if (!(await exists(c, "guardian.backups"))) return null;
  const row = await one<{ b: any }>(
    c,
    `SELECT to_jsonb(b) AS b FROM guardian.backups b
      WHERE ($1::text IS NULL OR backup_id = $1) ORDER BY created_at DESC, backup_id DESC LIMIT 1`,
    [backupId ?? null],
  );
  if (!row) return null;
  const b = row.b;
  const schemaName: string = b.schema_name ?? b.backup_id;
  if (!IDENT.test(schemaName)) throw new Error(`report: guardian.backups names an invalid schema "${schemaName}"`);
  const schemaPresent = (await one(c, `SELECT to_regnamespace($1) IS NOT NULL AS p`, [schemaName])).p;

  let manifest: any = null;
  const exportDir: string | null = b.export_dir ?? null;
  if (exportDir) {
    try {
      manifest = JSON.parse(fs.readFileSync(path.join(exportDir, "manifest.json"), "utf8"));
    } catch {
      manifest = null;
    }
  }
  const recordedManifest = manifest ?? b.manifest ?? null;
  const tableNames = new Set<string>([...Object.keys(b.row_counts ?? {}), ...Object.keys(recordedManifest?.tables ?? {})]);
  const tables: Record<string, BackupTableFigures> = {};
  for (const t of [...tableNames].sort()) {
    if (!IDENT.test(t)) continue;
    const m = manifest?.tables?.[t];
    let rowsInSchema: number | null = null;
    let checksumInSchema: string | null = null;
    if (schemaPresent && (await exists(c, `${schemaName}.${t}`))) {
      const r = await one(c, ROW_CHECKSUM(`${schemaName}.${t}`));
      rowsInSchema = Number(r.n);
      checksumInSchema = r.checksum;
    }
    const rowsRecorded = b.row_counts?.[t] ?? b.manifest?.tables?.[t]?.rows ?? null;
    const checksumRecorded = b.checksums?.[t] ?? b.manifest?.tables?.[t]?.checksum ?? null;
    const fileSha256Now = exportDir && m?.file ? sha256File(path.join(exportDir, m.file)) : null;
    const fig: BackupTableFigures = {
      rowsInSchema,
      rowsRecorded: rowsRecorded === null ? null : Number(rowsRecorded),
      rowsInManifest: m ? Number(m.rows) : null,
      checksumInSchema,
      checksumRecorded,
      checksumInManifest: m?.checksum ?? null,
      fileSha256InManifest: m?.sha256 ?? null,
      fileSha256Now,
      consistent: true,
    };
    const same = (xs: (string | number | null)[]) => new Set(xs.filter((x) => x !== null).map(String)).size <= 1;
    fig.consistent =
      same([fig.rowsInSchema, fig.rowsRecorded, fig.rowsInManifest]) &&
      same([fig.checksumInSchema, fig.checksumRecorded, fig.checksumInManifest]) &&
      same([fig.fileSha256InManifest, fig.fileSha256Now]);
    tables[t] = fig;
  }
  const recordedFunctionMd5: Record<string, string> = {};
  for (const f of b.functions ?? []) if (f?.signature && f?.def_md5) recordedFunctionMd5[f.signature] = f.def_md5;
  if (b.v1_function_def) recordedFunctionMd5["consume_credits_rpc(uuid,text)"] ??= crypto.createHash("md5").update(b.v1_function_def).digest("hex");
  return {
    backupId: b.backup_id,
    schemaName,
    schemaPresent,
    createdAt: new Date(b.created_at).toISOString(),
    exportDir,
    manifestReadable: manifest !== null,
    restoreVerified: b.restore_verified === true,
    verifiedAt: b.verified_at ? new Date(b.verified_at).toISOString() : null,
    tables,
    recordedFunctionMd5,
  };
}

/** SQL for the allocation rule of a row (same normalisation as the backfill: trim, lower-case). */
const RULE = (col: string) =>
  `CASE WHEN lower(btrim(${col}, E' \\t\\r\\n')) = ANY($1::text[]) THEN 'plan:' || lower(btrim(${col}, E' \\t\\r\\n')) ELSE 'split' END`;

export interface FigureOptions {
  /** The validated stack config (margin target, plan catalogue fallback). */
  config: GuardianConfig;
  /** The backup the stack names (multi: backupId; unified: rollbackBackupId); default the latest. */
  backupId?: string;
}

/** The report's facts about the database's shape, isolation and v1 (each read now, from the database). */
export async function accessFigures(
  c: Client,
  config: FigureOptions["config"],
  planNames: string[],
): Promise<Pick<DatabaseFigures, "isolation" | "access" | "splitPlanNames" | "v1Weaknesses">> {
  const found = await discoverShape(c, config.schema);
  const isolation = found.shape ? await isolationMatrix(c, found.shape.profileRoleColumn, ISOLATION_TABLES) : null;
  const matrix = found.shape ? await probeAccess(c, found.shape.profileRoleColumn) : null;
  const access = matrix ? { matrix, mismatches: accessMismatches(matrix) } : null;
  const names = await c.query(
    `SELECT coalesce(nullif(lower(btrim(plan_name, E' \\t\\r\\n')), ''), '(empty)') AS plan, count(*)::bigint AS n
       FROM public.organization_credits
      WHERE plan_name IS NULL OR lower(btrim(plan_name, E' \\t\\r\\n')) <> ALL ($1::text[])
      GROUP BY 1 ORDER BY 2 DESC, 1`,
    [planNames],
  );
  const v1 = (
    await c.query(
      `SELECT pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl FROM pg_catalog.pg_proc p
      WHERE p.oid = to_regprocedure('public.consume_credits_rpc(uuid,text)')`,
    )
  ).rows[0];
  return {
    isolation,
    access,
    splitPlanNames: Object.fromEntries(names.rows.map((r) => [r.plan, Number(r.n)])),
    v1Weaknesses: v1 ? v1Facts(v1.def, v1.acl).weaknesses : [],
  };
}

export async function serverVersion(c: Client): Promise<string> {
  return (await one(c, `SELECT current_setting('server_version') AS v`)).v as string;
}

export interface CatalogueFigures {
  /** Per-pool allocation of each catalogue plan. */
  catalogue: Record<string, PoolAmounts>;
  catalogueSource: DatabaseFigures["catalogueSource"];
  /** The catalogue's plan names (what the allocation rule matches, after trim + lower-case). */
  planNames: string[];
}

/** The catalogue the database applies (the Catalogue component writes it), else the stack config's. */
export async function catalogueFigures(c: Client, config: GuardianConfig): Promise<CatalogueFigures> {
  let catalogue: Record<string, PoolAmounts> = {};
  let catalogueSource: DatabaseFigures["catalogueSource"] = "config";
  if (await exists(c, "guardian.plan_catalogue")) {
    const r = await c.query(`SELECT plan_name, ai, whatsapp, email, sms FROM guardian.plan_catalogue ORDER BY plan_name`);
    if (r.rows.length) {
      catalogueSource = "guardian.plan_catalogue";
      for (const p of r.rows) catalogue[p.plan_name] = { ai: p.ai, whatsapp: p.whatsapp, email: p.email, sms: p.sms };
    }
  }
  if (catalogueSource === "config") {
    catalogue = Object.fromEntries(Object.entries(config.plans).map(([k, p]) => [k, { ai: p.ai, whatsapp: p.whatsapp, email: p.email, sms: p.sms }]));
  }
  return { catalogue, catalogueSource, planNames: Object.keys(catalogue) };
}

export interface MigrationColumns {
  /** Columns of public.organization_credits and public.credit_consumption_logs now. */
  credits: Set<string>;
  logs: Set<string>;
  /** organization_credits has credit_model and every pool's _credits_available. */
  migrated: boolean;
  /** credit_consumption_logs has every pool's _consumed, credit_model and allocation_epoch. */
  logMigrated: boolean;
}

/** Which of the migration's columns exist now (every figure below tolerates a database that is not migrated). */
export async function migrationColumns(c: Client): Promise<MigrationColumns> {
  const credits = await columnsOf(c, "public", "organization_credits");
  const logs = await columnsOf(c, "public", "credit_consumption_logs");
  return {
    credits,
    logs,
    migrated: credits.has("credit_model") && POOLS.every((p) => credits.has(`${p}_credits_available`)),
    logMigrated: POOLS.every((p) => logs.has(`${p}_consumed`)) && logs.has("credit_model") && logs.has("allocation_epoch"),
  };
}

/** Organizations per model and per allocation rule. */
export async function organizationFigures(
  c: Client,
  planNames: string[],
  cols: Pick<MigrationColumns, "credits">,
): Promise<Pick<DatabaseFigures, "orgsByModel" | "orgsTotal" | "orgsPerRule" | "orgsWithoutCredits">> {
  const modelExpr = cols.credits.has("credit_model") ? "credit_model" : "'unified'::text";
  const byRule = await c.query(
    `SELECT ${RULE("plan_name")} AS rule, ${modelExpr} AS model, count(*)::bigint AS n
       FROM public.organization_credits GROUP BY 1, 2 ORDER BY 1, 2`,
    [planNames],
  );
  const orgsPerRule: Record<string, RuleFigures> = {};
  const orgsByModel: Record<string, number> = {};
  let orgsTotal = 0;
  for (const r of byRule.rows) {
    const f = (orgsPerRule[r.rule] ??= { orgs: 0, multi: 0, unified: 0 });
    const n = Number(r.n);
    f.orgs += n;
    if (r.model === "multi") f.multi += n;
    else f.unified += n;
    orgsByModel[r.model] = (orgsByModel[r.model] ?? 0) + n;
    orgsTotal += n;
  }
  // The organizations not counted above (no credit row).
  return { orgsByModel, orgsTotal, orgsPerRule, orgsWithoutCredits: await orgsWithoutCredits(c) };
}

/** Conservation per rule, for organizations in the multi model ({} before the migration). */
export async function conservationFigures(
  c: Client,
  { catalogue, planNames }: Pick<CatalogueFigures, "catalogue" | "planNames">,
  cols: MigrationColumns,
): Promise<Record<string, ConservationFigures>> {
  const conservation: Record<string, ConservationFigures> = {};
  if (!(cols.migrated && cols.credits.has("allocation_epoch"))) return conservation;
  const consumed = cols.logMigrated
    ? `SELECT organization_id, allocation_epoch, ${POOLS.map((p) => `sum(${p}_consumed) AS c_${p}`).join(", ")}
         FROM public.credit_consumption_logs WHERE success AND credit_model = 'multi' GROUP BY 1, 2`
    : `SELECT NULL::uuid AS organization_id, NULL::int AS allocation_epoch, ${POOLS.map((p) => `0::bigint AS c_${p}`).join(", ")} WHERE false`;
  const planValues = planNames.length
    ? `VALUES ${planNames.map((_, i) => `($${i * 5 + 2}::text, $${i * 5 + 3}::int, $${i * 5 + 4}::int, $${i * 5 + 5}::int, $${i * 5 + 6}::int)`).join(", ")}`
    : `SELECT NULL::text, 0, 0, 0, 0 WHERE false`;
  const params: unknown[] = [planNames];
  for (const p of planNames) params.push(p, catalogue[p].ai, catalogue[p].whatsapp, catalogue[p].email, catalogue[p].sms);
  const sumOf = (prefix: string, suffix: string) => POOLS.map((p) => `${prefix}${p}${suffix}`).join(" + ");
  const r = await c.query(
    `WITH cons AS (${consumed}),
          cat (plan_name, ai, whatsapp, email, sms) AS (${planValues}),
          o AS (
            SELECT oc.*, ${RULE("oc.plan_name")} AS rule,
                   ${POOLS.map((p) => `coalesce(k.c_${p}, 0) AS c_${p}`).join(", ")},
                   ${POOLS.map((p) => `cat.${p} AS a_${p}`).join(", ")},
                   ${POOLS.map((p) => `al.${p} AS al_${p}`).join(", ")}, al.organization_id IS NOT NULL AS recorded
              FROM public.organization_credits oc
              LEFT JOIN cons k ON k.organization_id = oc.organization_id AND k.allocation_epoch = oc.allocation_epoch
              LEFT JOIN cat ON 'plan:' || cat.plan_name = ${RULE("oc.plan_name")}
              -- the pools the epoch started with (credits_remaining moves with v2's unified debit and the
              -- application's refunds, which do not re-allocate); an allocation of an earlier version has none
              LEFT JOIN guardian.allocations al ON al.organization_id = oc.organization_id AND al.epoch = oc.allocation_epoch
             WHERE oc.credit_model = 'multi'),
          chk AS (
            SELECT organization_id, rule,
                   CASE WHEN rule = 'split'
                        THEN ${sumOf("", "_credits_total")} = greatest(total_credits, 0)
                        ELSE ${POOLS.map((p) => `${p}_credits_total = a_${p}`).join(" AND ")} END AS totals_ok,
                   CASE WHEN recorded THEN ${POOLS.map((p) => `${p}_credits_available + c_${p} = al_${p}`).join(" AND ")}
                        WHEN rule = 'split'
                        THEN ${sumOf("", "_credits_available")} + ${sumOf("c_", "")} = greatest(credits_remaining, 0)
                        ELSE ${POOLS.map((p) => `${p}_credits_available + c_${p} = a_${p}`).join(" AND ")} END AS available_ok
              FROM o)
     SELECT rule, count(*)::bigint AS n,
            count(*) FILTER (WHERE totals_ok)::bigint AS totals_ok,
            count(*) FILTER (WHERE available_ok)::bigint AS available_ok,
            (array_agg(organization_id::text ORDER BY organization_id) FILTER (WHERE NOT (totals_ok AND available_ok)))[1:5] AS bad
       FROM chk GROUP BY rule ORDER BY rule`,
    params,
  );
  for (const x of r.rows) {
    conservation[x.rule] = {
      orgs: Number(x.n),
      totalsConserved: Number(x.totals_ok),
      availableConserved: Number(x.available_ok),
      violations: x.bad ?? [],
    };
  }
  return conservation;
}

/** Anomalies the backfill recorded ([] when it never ran). */
export async function anomalyFigures(c: Client): Promise<Anomaly[]> {
  if (!(await exists(c, "guardian.backfill_anomalies"))) return [];
  return (await c.query(`SELECT organization_id::text AS id, kind, value, epoch FROM guardian.backfill_anomalies ORDER BY at, organization_id`)).rows.map(
    (a: any) => ({ organizationId: a.id, kind: a.kind, value: a.value === null ? null : Number(a.value), epoch: a.epoch }),
  );
}

/** The installed consume_credits_rpc / consume_credits_batch versions, each compared with what the backup recorded. */
export async function functionFigures(c: Client, backup: BackupFigures | null): Promise<FunctionFigure[]> {
  const fr = await c.query(
    `SELECT p.oid::regprocedure::text AS signature, md5(pg_get_functiondef(p.oid)) AS md5, p.prosecdef AS secdef,
            coalesce(p.proconfig, '{}') AS config
       FROM pg_proc p
      WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('consume_credits_rpc', 'consume_credits_batch')
      ORDER BY 1`,
  );
  return fr.rows.map((f: any) => ({
    signature: f.signature,
    definitionMd5: f.md5,
    securityDefiner: f.secdef,
    config: f.config,
    matchesBackupV1: backup?.recordedFunctionMd5[f.signature] === f.md5,
  }));
}

/** The row-level security policies of the reported tables (one md5 each, and one over all), and where RLS is on. */
export async function policyFigures(c: Client): Promise<Pick<DatabaseFigures, "policies" | "policiesMd5" | "rlsEnabled">> {
  const pr = await c.query(
    `SELECT schemaname || '.' || tablename AS tbl, policyname, cmd, roles::text[] AS roles, permissive,
            md5(coalesce(qual, '') || '|' || coalesce(with_check, '') || '|' || cmd || '|' || permissive || '|' || roles::text) AS md5
       FROM pg_policies
      WHERE (schemaname = 'public' AND tablename = ANY($1::text[])) OR (schemaname = 'guardian' AND tablename = 'migration_journal')
      ORDER BY 1, 2`,
    [REPORTED_TABLES],
  );
  const policies: PolicyFigure[] = pr.rows.map((p: any) => ({
    table: p.tbl,
    policy: p.policyname,
    command: p.cmd,
    roles: p.roles,
    permissive: p.permissive,
    md5: p.md5,
  }));
  const policiesMd5 = crypto
    .createHash("md5")
    .update(policies.map((p) => `${p.table}/${p.policy}:${p.md5}`).join("\n"))
    .digest("hex");
  const rls = await c.query(
    `SELECT n.nspname || '.' || c.relname AS tbl, c.relrowsecurity AS on
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (n.nspname = 'public' AND c.relname = ANY($1::text[])) OR (n.nspname = 'guardian' AND c.relname = 'migration_journal')
      ORDER BY 1`,
    [REPORTED_TABLES],
  );
  const rlsEnabled = Object.fromEntries(rls.rows.map((r: any) => [r.tbl, r.on]));
  return { policies, policiesMd5, rlsEnabled };
}

/** Consumption logged since the migration (the backup's snapshot time); null without a backup. */
export async function consumptionFigures(
  c: Client,
  backup: Pick<BackupFigures, "createdAt"> | null,
  cols: Pick<MigrationColumns, "logs" | "logMigrated">,
): Promise<ConsumptionFigures | null> {
  if (!backup) return null;
  const actCols = await columnsOf(c, "public", "credit_actions");
  const hasRequired = POOLS.every((p) => actCols.has(`${p}_credits_required`));
  const perPoolSelect = POOLS.map((p) => {
    const consumed = cols.logMigrated ? `l.${p}_consumed` : "0";
    const requires = hasRequired ? `a.${p}_credits_required > 0` : "false";
    return `count(*) FILTER (WHERE l.success AND ${consumed} > 0) AS ${p}_successes,
            coalesce(sum(${consumed}) FILTER (WHERE l.success), 0) AS ${p}_credits,
            count(*) FILTER (WHERE NOT l.success AND ${requires}) AS ${p}_refusals`;
  }).join(",\n");
  const model = cols.logs.has("credit_model") ? "coalesce(l.credit_model, 'unified')" : "'unified'";
  const code = cols.logs.has("error_code") ? "coalesce(l.error_code, l.error_message, 'unknown')" : "coalesce(l.error_message, 'unknown')";
  const since = backup.createdAt;
  const r = await one(
    c,
    `SELECT count(*) FILTER (WHERE l.success) AS successes, count(*) FILTER (WHERE NOT l.success) AS refusals,
            coalesce(sum(l.credits_consumed) FILTER (WHERE l.success), 0) AS unified_cost,
            ${perPoolSelect}
       FROM public.credit_consumption_logs l LEFT JOIN public.credit_actions a USING (action_type)
      WHERE l.created_at >= $1`,
    [since],
  );
  const byModel = await c.query(
    `SELECT ${model} AS m, count(*)::bigint AS n FROM public.credit_consumption_logs l
      WHERE l.success AND l.created_at >= $1 GROUP BY 1 ORDER BY 1`,
    [since],
  );
  const byCode = await c.query(
    `SELECT ${code} AS code, count(*)::bigint AS n FROM public.credit_consumption_logs l
      WHERE NOT l.success AND l.created_at >= $1 GROUP BY 1 ORDER BY 2 DESC, 1`,
    [since],
  );
  return {
    since,
    perPool: Object.fromEntries(
      POOLS.map((p) => [p, { successes: Number(r[`${p}_successes`]), credits: Number(r[`${p}_credits`]), refusals: Number(r[`${p}_refusals`]) }]),
    ) as Record<Pool, PoolConsumption>,
    successes: Number(r.successes),
    refusals: Number(r.refusals),
    successesByModel: Object.fromEntries(byModel.rows.map((x: any) => [x.m, Number(x.n)])),
    unifiedCost: Number(r.unified_cost),
    refusalsByCode: Object.fromEntries(byCode.rows.map((x: any) => [x.code, Number(x.n)])),
  };
}

/** Margins: the database's view (public.plan_margins) when it is there, else the same computation from config. */
export async function marginFigures(c: Client, config: GuardianConfig): Promise<DatabaseFigures["margins"]> {
  if (await exists(c, "public.plan_margins")) {
    const r = await c.query(`SELECT plan_name, price_eur, cost_eur, margin_pct FROM public.plan_margins ORDER BY plan_name`);
    return {
      source: "public.plan_margins",
      target: config.marginTarget,
      plans: r.rows.map((m: any) => {
        const pct = m.margin_pct === null ? null : Number(m.margin_pct);
        return {
          plan: m.plan_name,
          priceEur: m.price_eur === null ? null : Number(m.price_eur),
          costEur: m.cost_eur === null ? null : Number(m.cost_eur),
          marginPct: pct,
          belowTarget: pct === null ? null : pct / 100 < config.marginTarget,
        };
      }),
    };
  }
  return {
    source: "lib/margins.ts",
    target: config.marginTarget,
    plans: planMargins(config)
      .map((m) => ({ plan: m.plan, priceEur: m.priceEur, costEur: m.costEur, marginPct: m.marginPct, belowTarget: m.belowTarget }))
      .sort((a, b) => a.plan.localeCompare(b.plan)),
  };
}

/** Chart data: unified credits per rule in the backup, per-pool available per rule now. */
export async function chartFigures(
  c: Client,
  backup: Pick<BackupFigures, "schemaPresent" | "schemaName"> | null,
  planNames: string[],
  migrated: boolean,
): Promise<ChartFigures> {
  const before: Record<string, number> = {};
  if (backup?.schemaPresent && (await exists(c, `${backup.schemaName}.organization_credits`))) {
    const r = await c.query(
      `SELECT ${RULE("plan_name")} AS rule, sum(greatest(credits_remaining, 0))::bigint AS n
         FROM ${backup.schemaName}.organization_credits GROUP BY 1 ORDER BY 1`,
      [planNames],
    );
    for (const x of r.rows) before[x.rule] = Number(x.n);
  }
  const after: Record<string, PoolAmounts> = {};
  if (migrated) {
    const r = await c.query(
      `SELECT ${RULE("plan_name")} AS rule, ${POOLS.map((p) => `sum(${p}_credits_available)::bigint AS ${p}`).join(", ")}
         FROM public.organization_credits WHERE credit_model = 'multi' GROUP BY 1 ORDER BY 1`,
      [planNames],
    );
    for (const x of r.rows) after[x.rule] = Object.fromEntries(POOLS.map((p) => [p, Number(x[p])])) as PoolAmounts;
  }
  return { before, after };
}

/** Every figure of the report the database answers, one step at a time (each step above runs alone too). */
export async function databaseFigures(c: Client, opts: FigureOptions): Promise<DatabaseFigures> {
  const { config } = opts;
  const version = await serverVersion(c);
  const cat = await catalogueFigures(c, config);
  const cols = await migrationColumns(c);
  const orgs = await organizationFigures(c, cat.planNames, cols);
  const conservation = await conservationFigures(c, cat, cols);
  const anomalies = await anomalyFigures(c);
  const backup = await backupFigures(c, opts.backupId);
  const functions = await functionFigures(c, backup);
  const pol = await policyFigures(c);
  const consumption = await consumptionFigures(c, backup, cols);
  const margins = await marginFigures(c, config);
  const chart = await chartFigures(c, backup, cat.planNames, cols.migrated);

  return {
    serverVersion: version,
    orgsByModel: orgs.orgsByModel,
    orgsTotal: orgs.orgsTotal,
    orgsWithoutCredits: orgs.orgsWithoutCredits,
    migrated: cols.migrated,
    catalogueSource: cat.catalogueSource,
    backup,
    orgsPerRule: orgs.orgsPerRule,
    conservation,
    anomalies,
    functions,
    policies: pol.policies,
    policiesMd5: pol.policiesMd5,
    rlsEnabled: pol.rlsEnabled,
    consumption,
    margins,
    chart,
    ...(await accessFigures(c, config, cat.planNames)),
  };
}
