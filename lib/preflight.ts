/**
 * Go/no-go (contract step 1): every gate is evaluated against the live database before any resource is declared, and
 * every failure is reported at once, in one NoGoError:
 *
 *   NO-GO: 2 gates failed:
 *     - baseline: table public.credit_actions is missing
 *     - catalogue: action "foo" has no pool mapping in guardian:actions
 *
 * Gates, in order:
 *   connection  the server answers (the error says why not, never with the password); without it nothing else runs.
 *               TLS as guardian:tls / sslmode say (lib/pgConnection.ts); the note says whether the link is encrypted
 *   session     the connection is one session from transaction to transaction: a session setting (SET) and a session
 *               advisory lock taken in one transaction are still there in the next, while a second connection holds a
 *               transaction open. A pooler in transaction mode (PgBouncer pool_mode=transaction, Supabase's pooler on
 *               port 6543) hands the next transaction another server connection: refused, naming the session pooler
 *               or the direct connection to use instead
 *   server      PostgreSQL 14 or later (server_version_num >= 140000)
 *   baseline    the tables of lib/baseline.ts BASELINE_TABLES, auth.uid(), and consume_credits_rpc in some version
 *   shape       every column and function the program's SQL reads is there, and the shape is known (lib/shape.ts):
 *               the profile role column (role or user_role), trials (is_trial, or plan names with cycle_end_date)
 *   access      acting as the application's roles (read-only; lib/accessProbe.ts), no capability they have today is
 *               taken away by the program's policies unless a leak, an escalation or a restriction the contract requires
 *               explains it (lib/access.ts); every change, closed or appearing, is named in the notes and in preview
 *   locks       no other session has held a transaction open longer than N seconds with a lock on one of those
 *               tables (the migration's DDL would queue behind it, and every application query behind the DDL)
 *   catalogue   (creditModel multi) every action type in public.credit_actions has a mapping in guardian:actions
 *
 * A config that does not validate never gets here: parseConfig (lib/config.ts) throws its own error, listing every key.
 * Read-only: preflight runs SELECTs under a short lock_timeout and statement_timeout, and writes nothing.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { BASELINE_TABLES } from "./baseline";
import { findUnmappedActions } from "./catalogueSql";
import { type GuardianConfig, tlsSettings } from "./config";
import { connect, redactUrl } from "./db";
import { resolveTls, type TlsSettings } from "./pgConnection";
import { type DatabaseShape, discoverShape, renderSql } from "./shape";
import { v1Facts, type V1Facts } from "./v1Behaviour";
import { type AccessComparison, compareAccess } from "./access";
import { probeAccess } from "./accessProbe";
import { errorCode, errorMessage, GuardianRefusal } from "./errors";

/** What the program found in the database, read-only, for the components and for preview. */
export interface Discovery {
  shape: DatabaseShape;
  /** credit_actions.credits_cost as it is live. */
  livePrices: Record<string, number>;
  /** Policies on the guarded public tables that the program did not write (name not guardian_*). */
  foreignPolicies: { table: string; name: string; command: string; permissive: string; roles: string; using: string | null; check: string | null }[];
  /** The v1 consume_credits_rpc(uuid,text), when it is live: its behaviours v2 changes and its weaknesses. */
  v1?: V1Facts & { comment: string | null };
  /** Organizations on a trial (the shape's rule) whose cycle_end_date is past: v2 refuses them with TRIAL_EXPIRED. */
  expiredTrials: number;
  /** The access matrix as found (lib/accessProbe.ts, read-only) against what the program's policies allow. */
  access?: AccessComparison;
}

export const GATES = ["connection", "session", "server", "baseline", "shape", "access", "locks", "catalogue"] as const;
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
  /** TLS settings (default: guardian:tls as lib/config.ts tlsSettings reads it, relative to the current folder). */
  tls?: TlsSettings;
}

/** The go/no-go refused: the message lists every failed gate, one line each. */
export class NoGoError extends GuardianRefusal {
  constructor(public readonly report: PreflightReport) {
    super(formatNoGo(report.failures), "NoGoError");
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
  return (
    `pid ${h.pid} (${who}) has held a transaction open for ${h.age_s} s (limit ${limit} s) with locks on ${h.locks}; ` +
    `the migration's DDL would wait behind it: end that transaction or run again when it is done`
  );
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
    report.notes.push(
      `locks: ${hidden} session(s) of other roles hold locks on the credit tables; their age is not visible to this role (grant it pg_read_all_stats to check)`,
    );
  }
  if (visible.length === 0)
    report.notes.push(`locks: no transaction older than ${limit} s holds a lock on ${BASELINE_TABLES.map((t) => `public.${t}`).join(", ")}`);
}

/** Key (class) of the session gate's advisory lock: "GU". The object key is random per run. */
const SESSION_LOCK_CLASS = 0x4755;

/**
 * Where to connect instead of a transaction-mode pooler. For Supabase's pooler host the same URL on port 5432 (the
 * session pooler), password masked; otherwise the general advice.
 */
export function sessionAdvice(url: string): string {
  let host = "";
  let port = "";
  let user = "";
  try {
    const u = new URL(url);
    host = u.hostname;
    port = u.port;
    user = decodeURIComponent(u.username);
  } catch {
    // not a URL: general advice only
  }
  const supabase =
    "Supabase: the session pooler is port 5432 on the same pooler host (aws-0-<region>.pooler.supabase.com), user postgres.<project-ref>; " +
    "the direct connection is db.<project-ref>.supabase.co:5432 (IPv6 only unless the project has the IPv4 add-on; GitHub-hosted runners are IPv4 only)";
  if (/\.pooler\.supabase\.com$/i.test(host)) {
    const u = new URL(url);
    u.port = "5432";
    const ref = /^postgres\.(.+)$/.exec(user)?.[1];
    return (
      `connect through Supabase's session pooler instead: ${redactUrl(u.toString())} (port 5432, not ${port || "6543"})` +
      (ref ? `, or directly to db.${ref}.supabase.co:5432 (IPv6 only unless the project has the IPv4 add-on)` : "")
    );
  }
  return `connect through a session-mode pooler (PgBouncer: pool_mode = session) or directly to PostgreSQL instead. ${supabase}`;
}

/**
 * The session gate. A: SET a setting and take a session advisory lock, each in its own transaction. B (a second
 * connection): open a transaction and keep it open, so that a transaction pooler must give A's next transaction another
 * server connection if it gave A's last one back. A: is the setting there, the lock held, the backend the same?
 */
async function gateSession(
  c: Client,
  openOther: () => Promise<Client>,
  url: string,
  report: PreflightReport,
  fail: (g: Gate, m: string) => void,
): Promise<void> {
  const token = crypto.randomBytes(8).toString("hex");
  const key = crypto.randomInt(1, 2 ** 31 - 1);
  const probe = `SELECT pg_backend_pid() AS pid, current_setting('guardian.session_probe', true) AS setting,
                        EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                                 WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
                                   AND l.classid = ${SESSION_LOCK_CLASS} AND l.objid = ${key} AND l.objsubid = 2) AS locked`;
  await c.query(`SET guardian.session_probe = '${token}'`);
  await c.query(`SELECT pg_advisory_lock(${SESSION_LOCK_CLASS}, ${key})`);
  const before = (await c.query(probe)).rows[0];
  let other: Client | undefined;
  let otherSaw: { pid: number; setting: string | null } | undefined;
  let statementMode: string | undefined;
  try {
    other = await openOther();
    try {
      await other.query("BEGIN");
      otherSaw = (await other.query(probe)).rows[0];
    } catch (e) {
      statementMode = errorMessage(e);
    }
  } catch (e) {
    report.notes.push(`session: a second connection could not be opened (${errorMessage(e).split("\n")[0]}); the check used one connection`);
  }
  try {
    const after = (await c.query(probe)).rows[0];
    const kept = after.setting === token && after.locked && after.pid === before.pid;
    if (statementMode !== undefined) {
      fail(
        "session",
        `the connection goes through a pooler that refuses transactions (${statementMode}): statement pooling. ` +
          `The migration needs one session throughout. ${sessionAdvice(url)}`,
      );
    } else if (!kept) {
      const what = [
        after.setting !== token ? "a session setting (SET) made in one transaction was gone in the next" : "",
        !after.locked ? "a session advisory lock taken in one transaction was no longer held in the next" : "",
        after.pid !== before.pid ? `the backend changed (pid ${before.pid}, then ${after.pid})` : "",
        otherSaw && otherSaw.setting === token ? "and another connection saw that setting" : "",
      ]
        .filter(Boolean)
        .join("; ");
      fail(
        "session",
        `the connection goes through a pooler in transaction mode: ${what}. The migration needs one session ` +
          `throughout (session advisory locks, SET lock_timeout, CREATE INDEX CONCURRENTLY). ${sessionAdvice(url)}`,
      );
    } else {
      report.notes.push(
        `session: a session setting and an advisory lock survive from one transaction to the next (backend pid ${after.pid} throughout${otherSaw ? `, a second connection on pid ${otherSaw.pid}` : ""}): no transaction-mode pooler in between`,
      );
    }
  } finally {
    // Leave nothing behind on whichever server connection holds them (a pooler hands them to others).
    for (const cl of [other, c]) {
      if (!cl) continue;
      await cl
        .query(
          `SET client_min_messages = error; SELECT pg_advisory_unlock(${SESSION_LOCK_CLASS}, ${key}); RESET guardian.session_probe; RESET client_min_messages`,
        )
        .catch(() => undefined);
    }
    if (other) {
      await other.query("COMMIT").catch(() => undefined);
      await other.end().catch(() => undefined);
    }
  }
}

async function gateCatalogue(c: Client, config: GuardianConfig, report: PreflightReport, fail: (g: Gate, m: string) => void): Promise<void> {
  let types: string[];
  try {
    types = (await c.query(`SELECT action_type FROM public.credit_actions ORDER BY action_type`)).rows.map((r) => r.action_type);
  } catch (e) {
    const code = errorCode(e);
    if (code === "55P03" || code === "57014") {
      fail("catalogue", `public.credit_actions could not be read: ${code === "55P03" ? "another session holds a lock on it" : "the query timed out"}`);
      return;
    }
    throw e;
  }
  const unmapped = findUnmappedActions(types, config);
  for (const t of unmapped) fail("catalogue", `action "${t}" has no pool mapping in guardian:actions`);
  if (unmapped.length === 0) report.notes.push(`catalogue: all ${types.length} action types of public.credit_actions are mapped in guardian:actions`);
}

/**
 * Access (contract: "The application around the credits keeps working"): the matrix found by acting as anon, a
 * member, an organization admin, a super_admin, a user without a profile and service_role (read-only: writes are
 * evaluated, never made), compared with what the program's policies allow. A capability taken away that no leak,
 * escalation or required restriction covers is a no-go; every change is in the notes (and in preview).
 */
async function gateAccess(c: Client, d: Discovery, report: PreflightReport, fail: (g: Gate, m: string) => void): Promise<void> {
  try {
    d.access = compareAccess(await probeAccess(c, d.shape.profileRoleColumn));
  } catch (e) {
    fail("access", `could not act as the application's roles to find what they may do: ${errorMessage(e)}`);
    return;
  }
  for (const l of d.access.lost) {
    fail("access", `${l.role} may ${l.cell} today and could not after up, and no leak, escalation or required restriction explains it (lib/access.ts)`);
  }
  report.notes.push(
    `access: ${d.access.cells} cells probed as the application's roles: ${d.access.kept} kept, ${d.access.closed.length} closed (named), ${d.access.appears.length} appear (named), ${d.access.lost.length} lost`,
  );
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
  const expired = await c.query<{ n: string }>(
    `SELECT count(*)::bigint AS n FROM public.organization_credits oc
      WHERE (${renderSql("{{is_trial:oc}}", shape)}) AND oc.cycle_end_date < now()`,
  );
  return {
    shape,
    expiredTrials: Number(expired.rows[0].n),
    livePrices: Object.fromEntries(prices.rows.map((r) => [r.action_type, Number(r.credits_cost)])),
    foreignPolicies: policies.rows,
    v1: v1.rows[0] ? { ...v1Facts(v1.rows[0].def, v1.rows[0].acl), comment: v1.rows[0].comment } : undefined,
  };
}

/** What the connection's TLS is, as the client sees it (a pooler's own link to the server is not visible here). */
function describeTls(c: Client, url: string, tls: TlsSettings | undefined): string {
  const r = resolveTls(url, tls);
  const stream: any = (c as any).connection?.stream;
  if (!stream?.encrypted) {
    return `not encrypted (sslmode ${r.mode} from ${r.modeFrom}${r.mode === "prefer" || r.mode === "allow" ? "; the server offered no TLS" : ""})`;
  }
  const verified =
    r.mode === "verify-full"
      ? `certificate and host name verified against ${r.caFrom ?? "the system's root certificates"}`
      : r.mode === "verify-ca" || (r.mode === "require" && r.ca)
        ? `certificate verified against ${r.caFrom}, host name not checked`
        : "certificate not verified";
  return `${stream.getProtocol?.() ?? "TLS"}, ${verified} (sslmode ${r.mode} from ${r.modeFrom})`;
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
    report.passed = GATES.filter((g) => evaluated.includes(g) && !failedGates.has(g));
    report.failures.sort((a, b) => GATES.indexOf(a.gate) - GATES.indexOf(b.gate));
    report.go = report.failures.length === 0;
    if (!report.go && opts.throwOnNoGo !== false) throw new NoGoError(report);
    return report;
  };

  let c: Client;
  let tls: TlsSettings | undefined;
  const open = (name: string) => connect(config.databaseUrl, { connectionTimeoutMillis: opts.connectTimeoutMs ?? 10000, application_name: name, tls });
  try {
    tls = opts.tls ?? tlsSettings(config);
    c = await open("guardian-credits:preflight");
  } catch (e) {
    // connect() already describes the failure without the password (lib/db.ts explainConnectError).
    fail("connection", `${errorMessage(e)}; the other gates were not evaluated`);
    for (const g of GATES.slice(1)) report.skipped.push({ gate: g, reason: "the server could not be reached" });
    return finish(["connection"]);
  }
  try {
    report.notes.push(`connection: ${describeTls(c, config.databaseUrl, tls)}`);
    await c.query(`SET lock_timeout = '5s'; SET statement_timeout = '30s'`);
    const evaluated: Gate[] = ["connection", "session", "server", "baseline", "shape", "locks"];
    await gateSession(c, () => open("guardian-credits:preflight-session"), config.databaseUrl, report, fail);
    await gateServer(c, report, fail);
    const present = await gateBaseline(c, fail);
    const found = await discoverShape(c, config.schema);
    for (const p of found.problems) fail("shape", p);
    report.notes.push(...found.notes);
    if (found.shape && present.size === BASELINE_TABLES.length) {
      report.discovery = await discover(c, found.shape);
      evaluated.push("access");
      await gateAccess(c, report.discovery, report, fail);
    } else {
      report.skipped.push({ gate: "access", reason: "the baseline or the shape gate failed: there is nothing to act on" });
    }
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
