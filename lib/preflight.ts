/**
 * Go/no-go (contract step 1): every gate is evaluated against the live database before any resource is declared, and
 * every failure is reported at once, in one NoGoError:
 *
 *   NO-GO: 2 gates failed:
 *     - baseline: table public.credit_actions is missing
 *     - catalogue: action "foo" has no pool mapping in guardian:actions
 *
 * Gates, in order:
 *   connection  the server answers (the error says why not, never with the password); without it nothing else runs
 *   server      PostgreSQL 14 or later (server_version_num >= 140000)
 *   baseline    the tables of lib/baseline.ts BASELINE_TABLES, auth.uid(), and consume_credits_rpc in some version
 *   shape       every column and function the program's SQL reads is there, and the shape is known (lib/shape.ts):
 *               the profile role column (role or user_role), trials (is_trial, or plan names with cycle_end_date)
 *   locks       no other session has held a transaction open longer than N seconds with a lock on one of those
 *               tables (the migration's DDL would queue behind it, and every application query behind the DDL)
 *   catalogue   (creditModel multi) every action type in public.credit_actions has a mapping in guardian:actions
 *
 * A config that does not validate never gets here: parseConfig (lib/config.ts) throws its own error, listing every key.
 * Read-only: preflight runs SELECTs under a short lock_timeout and statement_timeout, and writes nothing.
 */
import type { Client } from "pg";
import { BASELINE_TABLES } from "./baseline";
import { findUnmappedActions } from "./catalogueSql";
import type { GuardianConfig } from "./config";
import { connect } from "./db";
import { DatabaseShape, discoverShape } from "./shape";
import { v1Facts, V1Facts } from "./v1";

/** What the program found in the database, read-only, for the components and for preview. */
export interface Discovery {
  shape: DatabaseShape;
  /** credit_actions.credits_cost as it is live. */
  livePrices: Record<string, number>;
  /** Policies on the guarded public tables that the program did not write (name not guardian_*). */
  foreignPolicies: { table: string; name: string; command: string; permissive: string; roles: string; using: string | null; check: string | null }[];
  /** The v1 consume_credits_rpc(uuid,text), when it is live: its behaviours v2 changes and its weaknesses. */
  v1?: V1Facts & { comment: string | null };
}

export const GATES = ["connection", "server", "baseline", "shape", "locks", "catalogue"] as const;
export type Gate = (typeof GATES)[number];

export const MIN_SERVER_VERSION_NUM = 140000;

export interface GateFailure {
  gate: Gate;
  message: string;
}

export interface PreflightReport {
  /** True when no gate failed. */
  go: boolean;
  /** Every failure, in gate order. */
  failures: GateFailure[];
  /** Gates evaluated that found nothing wrong. */
  passed: Gate[];
  /** Gates not evaluated, with the reason (server unreachable; catalogue in the unified model). */
  skipped: { gate: Gate; reason: string }[];
  /** server_version_num, when the server answered. */
  serverVersionNum?: number;
  /** One line per fact worth printing (server version, what each passed gate checked). */
  notes: string[];
  /** What was found, when the baseline and shape gates passed. */
  discovery?: Discovery;
}

export interface PreflightOptions {
  /** A transaction older than this holding a lock on a credit table is a no-go. Default 60 seconds. */
  maxTransactionAgeSeconds?: number;
  /** How long to wait for the server to answer. Default 10000 ms. */
  connectTimeoutMs?: number;
  /** Throw NoGoError when a gate fails (default true); false returns the report with its failures. */
  throwOnNoGo?: boolean;
}

/** The go/no-go refused: the message lists every failed gate, one line each. */
export class NoGoError extends Error {
  constructor(public readonly report: PreflightReport) {
    super(formatNoGo(report.failures));
    this.name = "NoGoError";
  }
}

export function formatNoGo(failures: GateFailure[]): string {
  const gates = new Set(failures.map((f) => f.gate)).size;
  return `NO-GO: ${gates} gate${gates === 1 ? "" : "s"} failed:\n${failures.map((f) => `  - ${f.gate}: ${f.message}`).join("\n")}`;
}

/** The server gate, as a pure function of what the server reports. */
export function serverVersionFailure(versionNum: number, version: string): string | undefined {
  if (versionNum >= MIN_SERVER_VERSION_NUM) return undefined;
  return `PostgreSQL ${version} (server_version_num ${versionNum}) is not supported; 14 or later is required`;
}

interface LockHolder {
  pid: number;
  usename: string | null;
  application_name: string | null;
  state: string | null;
  age_s: number | null;
  locks: string;
}

function describeHolder(h: LockHolder, limit: number): string {
  const who = [`user ${h.usename ?? "?"}`, h.application_name ? `application "${h.application_name}"` : "", h.state ?? ""].filter(Boolean).join(", ");
  return `pid ${h.pid} (${who}) has held a transaction open for ${h.age_s} s (limit ${limit} s) with locks on ${h.locks}; ` +
    `the migration's DDL would wait behind it: end that transaction or run again when it is done`;
}

async function gateServer(c: Client, report: PreflightReport, fail: (g: Gate, m: string) => void): Promise<void> {
  const { rows } = await c.query(`SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS version`);
  report.serverVersionNum = rows[0].num;
  const problem = serverVersionFailure(rows[0].num, rows[0].version);
  if (problem) fail("server", problem);
  else report.notes.push(`server: PostgreSQL ${rows[0].version} (server_version_num ${rows[0].num})`);
}

async function gateBaseline(c: Client, fail: (g: Gate, m: string) => void): Promise<Set<string>> {
  const { rows } = await c.query(
    `SELECT t, EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = to_regclass('public.' || quote_ident(t)) AND c.relkind IN ('r', 'p')) AS present
       FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i`,
    [BASELINE_TABLES],
  );
  const present = new Set<string>();
  for (const r of rows) {
    if (r.present) present.add(r.t);
    else fail("baseline", `table public.${r.t} is missing`);
  }
  const fns = (
    await c.query(
      `SELECT to_regprocedure('auth.uid()') IS NOT NULL AS uid,
              (SELECT count(*)::int FROM pg_catalog.pg_proc p
                WHERE p.proname = 'consume_credits_rpc' AND p.pronamespace = 'public'::regnamespace) AS rpc`,
    )
  ).rows[0];
  if (!fns.uid) fail("baseline", "function auth.uid() is missing (is this a Supabase database?)");
  if (fns.rpc === 0) fail("baseline", "function public.consume_credits_rpc is missing (neither v1 nor v2)");
  return present;
}

async function gateLocks(c: Client, limit: number, report: PreflightReport, fail: (g: Gate, m: string) => void): Promise<void> {
  const { rows } = await c.query<LockHolder>(
    `SELECT a.pid, a.usename, nullif(a.application_name, '') AS application_name, a.state,
            floor(extract(epoch FROM now() - a.xact_start))::int AS age_s,
            string_agg(DISTINCT format('%I.%I (%s)', n.nspname, c.relname, l.mode), ', ') AS locks
       FROM pg_catalog.pg_locks l
       JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
       JOIN pg_catalog.pg_class c ON c.oid = l.relation
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE l.locktype = 'relation' AND l.granted
        AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
        AND l.relation IN (SELECT to_regclass('public.' || quote_ident(t)) FROM unnest($1::text[]) t)
        AND a.pid <> pg_backend_pid()
        AND (a.xact_start IS NULL OR a.xact_start < now() - make_interval(secs => $2))
      GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start
      ORDER BY a.xact_start NULLS LAST, a.pid`,
    [BASELINE_TABLES, limit],
  );
  const visible = rows.filter((r) => r.age_s !== null);
  for (const h of visible) fail("locks", describeHolder(h, limit));
  const hidden = rows.length - visible.length;
  if (hidden > 0) {
    // Without pg_read_all_stats another role's transaction start is not visible: say so rather than guess.
    report.notes.push(`locks: ${hidden} session(s) of other roles hold locks on the credit tables; their age is not visible to this role (grant it pg_read_all_stats to check)`);
  }
  if (visible.length === 0) report.notes.push(`locks: no transaction older than ${limit} s holds a lock on ${BASELINE_TABLES.map((t) => `public.${t}`).join(", ")}`);
}

async function gateCatalogue(c: Client, config: GuardianConfig, report: PreflightReport, fail: (g: Gate, m: string) => void): Promise<void> {
  let types: string[];
  try {
    types = (await c.query(`SELECT action_type FROM public.credit_actions ORDER BY action_type`)).rows.map((r) => r.action_type);
  } catch (e: any) {
    if (e?.code === "55P03" || e?.code === "57014") {
      fail("catalogue", `public.credit_actions could not be read: ${e.code === "55P03" ? "another session holds a lock on it" : "the query timed out"}`);
      return;
    }
    throw e;
  }
  const unmapped = findUnmappedActions(types, config);
  for (const t of unmapped) fail("catalogue", `action "${t}" has no pool mapping in guardian:actions`);
  if (unmapped.length === 0) report.notes.push(`catalogue: all ${types.length} action types of public.credit_actions are mapped in guardian:actions`);
}

async function discover(c: Client, shape: DatabaseShape): Promise<Discovery> {
  const prices = await c.query(`SELECT action_type, credits_cost FROM public.credit_actions`);
  const policies = await c.query(
    `SELECT tablename AS table, policyname AS name, cmd AS command, permissive, roles::text AS roles, qual AS using, with_check AS check
       FROM pg_catalog.pg_policies
      WHERE schemaname = 'public' AND tablename = ANY ($1::text[]) AND policyname NOT LIKE 'guardian\\_%'
      ORDER BY tablename, policyname`,
    [BASELINE_TABLES],
  );
  const v1 = await c.query(
    `SELECT pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl, obj_description(p.oid, 'pg_proc') AS comment
       FROM pg_catalog.pg_proc p WHERE p.oid = to_regprocedure('public.consume_credits_rpc(uuid,text)')`,
  );
  return {
    shape,
    livePrices: Object.fromEntries(prices.rows.map((r) => [r.action_type, Number(r.credits_cost)])),
    foreignPolicies: policies.rows,
    v1: v1.rows[0] ? { ...v1Facts(v1.rows[0].def, v1.rows[0].acl), comment: v1.rows[0].comment } : undefined,
  };
}

/**
 * Evaluates every gate and returns the report; throws NoGoError listing every failure unless throwOnNoGo is false.
 * Errors other than gate failures (a bug, a dropped connection mid-way) are thrown as they are.
 */
export async function preflight(config: GuardianConfig, opts: PreflightOptions = {}): Promise<PreflightReport> {
  const limit = opts.maxTransactionAgeSeconds ?? 60;
  const report: PreflightReport = { go: true, failures: [], passed: [], skipped: [], notes: [] };
  const failedGates = new Set<Gate>();
  const fail = (gate: Gate, message: string) => {
    report.failures.push({ gate, message });
    failedGates.add(gate);
  };
  const finish = (evaluated: Gate[]): PreflightReport => {
    report.passed = evaluated.filter((g) => !failedGates.has(g));
    report.failures.sort((a, b) => GATES.indexOf(a.gate) - GATES.indexOf(b.gate));
    report.go = report.failures.length === 0;
    if (!report.go && opts.throwOnNoGo !== false) throw new NoGoError(report);
    return report;
  };

  let c: Client;
  try {
    c = await connect(config.databaseUrl, { connectionTimeoutMillis: opts.connectTimeoutMs ?? 10000, application_name: "guardian-credits:preflight" });
  } catch (e: any) {
    // connect() already describes the failure without the password (lib/db.ts explainConnectError).
    fail("connection", `${e.message}; the other gates were not evaluated`);
    for (const g of GATES.slice(1)) report.skipped.push({ gate: g, reason: "the server could not be reached" });
    return finish(["connection"]);
  }
  try {
    await c.query(`SET lock_timeout = '5s'; SET statement_timeout = '30s'`);
    const evaluated: Gate[] = ["connection", "server", "baseline", "shape", "locks"];
    await gateServer(c, report, fail);
    const present = await gateBaseline(c, fail);
    const found = await discoverShape(c, config.schema);
    for (const p of found.problems) fail("shape", p);
    report.notes.push(...found.notes);
    if (found.shape && present.size === BASELINE_TABLES.length) report.discovery = await discover(c, found.shape);
    await gateLocks(c, limit, report, fail);
    if (config.creditModel !== "multi") {
      report.skipped.push({ gate: "catalogue", reason: "creditModel is unified: no action needs a pool" });
    } else if (!present.has("credit_actions")) {
      report.skipped.push({ gate: "catalogue", reason: "public.credit_actions is missing (see baseline)" });
    } else {
      evaluated.push("catalogue");
      await gateCatalogue(c, config, report, fail);
    }
    return finish(evaluated);
  } finally {
    await c.end().catch(() => undefined);
  }
}
