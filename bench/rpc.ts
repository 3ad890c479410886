/**
 * consume_credits_rpc benchmark: pgbench with custom scripts, latency percentiles from pgbench's per-transaction log
 * (-l), against baselines measured on the same machine in the same run:
 *
 *   v1                  the pre-Phase-3.5 function (sql/baseline/03_consume_credits_rpc_v1.sql), in its own fresh DB
 *   v2                  consume_credits_rpc v2 on multi organizations, called as service_role
 *   bare_update         one conditional single-row UPDATE of a pool: the floor of any debit
 *   plpgsql_reference   a minimal plpgsql debit-plus-log function into the migrated log (its width and indexes)
 *   bare_minimum        the floor of one locked debit plus one durable log row: a plpgsql function that runs a
 *                       conditional UPDATE on a two-column table (organization id primary key, one integer pool) and,
 *                       when a row was updated, an INSERT into a three-column log (bigserial id, organization id,
 *                       timestamptz DEFAULT now()), and returns the pool left
 *   bare_minimum_crm_keys
 *                       the bare minimum whose log also has the two foreign keys of the CRM's log (organization_id ->
 *                       organizations, action_type -> credit_actions): what the CRM's own schema adds to every call that
 *                       logs into it, v1's and v2's alike (each insert runs a referential check that locks the row it
 *                       finds; every call of one action locks the same catalogue row)
 *   v2_hot_org          v2 with every client on one organization (row-lock contention), checked afterwards:
 *                       successes == credits debited, and one log row per transaction
 *
 * After the rounds, an in-server reading of each case that calls a function (InServerCost; not a target): the call made
 * once for every organization in one statement of one rolled-back transaction, timed, its WAL counted. It leaves out
 * the client, the round trips and the commit that dominate pgbench's figures, and keeps what the call itself computes
 * and writes; it varies far less from round to round than the pgbench ratios do.
 *
 * Every case connects as service_role (PGOPTIONS=-c role=service_role), the role a backend calls v2 with. With the
 * Supabase caller (the default), every case is one transaction as PostgREST runs a request: BEGIN, the request's
 * settings in one SELECT of set_config (search_path, role, request.jwt.claims, method, path, headers, cookies), the
 * statement, COMMIT; the independent check of issue 14 measured with that preamble on both sides. The direct caller
 * sends the statement alone (autocommit): the harsher ratio, since a request's fixed costs are left out.
 * Figures depend on the machine: commit (WAL flush) dominates each call, so compare cases of one run, not runs.
 *
 * Each case runs at each client count (default 1, 8, 32) for a short fixed time. Returns plain data; writing results
 * and the npm script are the caller's job. The two databases are created fresh and dropped at the end.
 */
import { execFile } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import type { Client } from "pg";
import { actionCatalogueSql, planCatalogueSql } from "../lib/catalogueSql";
import { parseConfig } from "../lib/config";
import { ensureBaseline } from "../lib/baseline";
import { connect, inTransaction, redactSecrets } from "../lib/db";
import { createDatabase, dropDatabase } from "../operations/shared/pgserver";
import { explainSqlError, loadSql } from "../lib/sql";
import { CREDIT_FUNCTIONS } from "../components/creditFunctions";
import { CREDIT_SCHEMA_OBJECTS } from "../components/creditSchema";

const run = promisify(execFile);

export interface BenchRpcOptions {
  /** Seconds per run (pgbench -T). Default 5. */
  durationSec?: number;
  /** Client counts to run each case at. Default [1, 8, 32]. */
  clients?: number[];
  /** Organizations the clients pick from at random (not the hot-org case). Default 3,371 (the independent check's). */
  orgs?: number;
  /** How each call arrives: "supabase" (a PostgREST request's transaction and settings, the default) or "direct". */
  caller?: BenchCaller;
  /** Rounds: the whole set of cases run this many times, each round side by side (ratios are per round). Default 1. */
  rounds?: number;
  /** Path of pgbench. Default /usr/bin/pgbench, else pgbench on PATH. */
  pgbench?: string;
  /** Progress lines. Default: none. */
  log?: (line: string) => void;
}

export type BenchCaller = "supabase" | "direct";
export const BENCH_CALLERS: readonly BenchCaller[] = ["supabase", "direct"];

export interface LatencyMs {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

export interface CaseResult {
  case: string;
  clients: number;
  /** 1-based round of the run the case belongs to. */
  round: number;
  tps: number;
  transactions: number;
  failedTransactions: number;
  latencyMs: LatencyMs;
}

export interface HotOrgResult extends CaseResult {
  successes: number;
  creditsDebited: number;
  logRows: number;
  /** successes == creditsDebited, and one log row per transaction pgbench counted. */
  consistent: boolean;
}

export interface Ratio {
  clients: number;
  round: number;
  versus: string;
  /** v2 latency / baseline latency (1.0 = the same; above 1 = v2 slower). */
  p50: number;
  p99: number;
  /** v2 throughput / baseline throughput (below 1 = v2 slower). */
  tps: number;
}

/** One ratio over the rounds of a run: median, lowest and highest (the spread a shared machine gives). */
export interface RatioSpread {
  clients: number;
  versus: string;
  rounds: number;
  tps: { median: number; min: number; max: number };
  p99: { median: number; min: number; max: number };
}

export interface BenchRpcResult {
  server: string;
  at: string;
  durationSec: number;
  orgs: number;
  caller: BenchCaller;
  cases: CaseResult[];
  rounds: number;
  hotOrg: HotOrgResult[];
  /** v2 / baseline, per round and client count (both measured in that round). */
  ratios: Ratio[];
  /** The ratios over the rounds. */
  ratioSpread: RatioSpread[];
  /** The target of the brief: v2's p99 under 5 ms at 8 clients. */
  target: { clients: number; p99Ms: number; measuredP99Ms: number | null; met: boolean | null };
  /** What one call computes and writes inside the server, per case that calls a function (a reading, not a target). */
  inServer: InServerCost[];
}

/**
 * One case's call, made once for every organization in one statement and one transaction (as service_role, after the
 * request's settings; rolled back): no client, no round trip, no commit. What is left is what the call computes and
 * writes: the server's time per call and the WAL bytes it inserts. Medians over the rounds, and every round.
 */
export interface InServerCost {
  case: string;
  usPerCall: number;
  walBytesPerCall: number;
  rounds: { usPerCall: number; walBytesPerCall: number }[];
}

const HOT_ORG_CREDITS = 1_000_000_000;
/** The cases v2 is compared with, each round. */
const VERSUS = ["v1", "bare_update", "plpgsql_reference", "bare_minimum"];
export const orgUuid = (i: string) => `('00000000-0000-4000-8000-' || lpad((${i})::text, 12, '0'))::uuid`;

/** What PostgREST sets for a request, in one statement, before it runs the request's statement (transaction-local). */
const SUPABASE_PREAMBLE =
  "SELECT set_config('search_path', '\"public\", \"extensions\"', true), set_config('role', 'service_role', true), " +
  `set_config('request.jwt.claims', '{"role":"service_role","iss":"supabase"}', true), set_config('request.method', 'POST', true), ` +
  "set_config('request.path', '/rpc/consume_credits_rpc', true), " +
  `set_config('request.headers', '{"accept":"application/json","content-type":"application/json","prefer":"return=representation"}', true), ` +
  "set_config('request.cookies', '{}', true);";

/** The function call of each case that calls one, for the organization `org` (an SQL expression). */
const CALL: Record<string, (org: string) => string> = {
  v1: (org) => `public.consume_credits_rpc(${org}, 'ai_chat')`,
  v2: (org) => `public.consume_credits_rpc(${org}, 'ai_chat', 1)`,
  plpgsql_reference: (org) => `public.bench_debit_and_log(${org})`,
  bare_minimum: (org) => `public.bench_bare_minimum(${org})`,
  bare_minimum_crm_keys: (org) => `public.bench_bare_minimum_crm_keys(${org})`,
};

/** The pgbench scripts; every one picks its organization with the same expression and arrives the same way (the
 *  caller), so only the call differs. */
export function scripts(orgs: number, caller: BenchCaller = "supabase"): Record<string, string> {
  const pick = `\\set i random(1, ${orgs})\n`;
  const call = (statement: string) => (caller === "supabase" ? `BEGIN;\n${SUPABASE_PREAMBLE}\n${statement}\nEND;\n` : `${statement}\n`);
  const calls = Object.fromEntries(Object.entries(CALL).map(([name, f]) => [name, `${pick}${call(`SELECT ${f(orgUuid(":i"))};`)}`]));
  return {
    ...calls,
    bare_update: `${pick}${call(
      "UPDATE public.organization_credits SET ai_credits_available = ai_credits_available - 1 " +
        `WHERE organization_id = ${orgUuid(":i")} AND ai_credits_available >= 1;`,
    )}`,
    v2_hot_org: `\\set i 0\n${call(`SELECT ${CALL.v2(orgUuid(":i"))};`)}`,
  };
}

const REFERENCE_FUNCTION = `
CREATE OR REPLACE FUNCTION public.bench_debit_and_log(p_org uuid) RETURNS json
LANGUAGE plpgsql AS $fn$
DECLARE
  v_left integer;
BEGIN
  UPDATE public.organization_credits SET ai_credits_available = ai_credits_available - 1, updated_at = now()
   WHERE organization_id = p_org AND ai_credits_available >= 1
  RETURNING ai_credits_available INTO v_left;
  IF NOT FOUND THEN
    RETURN json_build_object('success', false);
  END IF;
  INSERT INTO public.credit_consumption_logs
    (organization_id, action_type, credits_consumed, credits_remaining, success, quantity, ai_consumed, credit_model, allocation_epoch)
  VALUES (p_org, 'ai_chat', 1, 0, true, 1, 1, 'multi', 0);
  RETURN json_build_object('success', true, 'remaining', v_left);
END
$fn$;
GRANT EXECUTE ON FUNCTION public.bench_debit_and_log(uuid) TO service_role;

CREATE TABLE public.bench_min_pool (organization_id uuid PRIMARY KEY, pool integer NOT NULL);
GRANT SELECT, UPDATE ON public.bench_min_pool TO service_role;
${bareMinimum("bench_bare_minimum", "bench_min_log", false)}
${bareMinimum("bench_bare_minimum_crm_keys", "bench_min_keyed_log", true)}`;

/**
 * A bare-minimum case: a conditional UPDATE of public.bench_min_pool and, when a row was updated, an INSERT into its
 * own log (bigserial id, organization id, `at`), returning the pool left. With `crmKeys`, the log also has the CRM
 * log's two foreign keys: organization_id to organizations, and an action_type column to credit_actions.
 */
function bareMinimum(fn: string, log: string, crmKeys: boolean): string {
  const keyed = crmKeys
    ? "REFERENCES public.organizations (id) ON DELETE CASCADE,\n  action_type text NOT NULL REFERENCES public.credit_actions (action_type),"
    : ",";
  return `
CREATE TABLE public.${log} (id bigserial PRIMARY KEY,
  organization_id uuid NOT NULL ${keyed}
  at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION public.${fn}(p_org uuid) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  v_left integer;
BEGIN
  UPDATE public.bench_min_pool SET pool = pool - 1 WHERE organization_id = p_org AND pool >= 1 RETURNING pool INTO v_left;
  IF FOUND THEN
    INSERT INTO public.${log} (organization_id${crmKeys ? ", action_type" : ""}) VALUES (p_org${crmKeys ? ", 'ai_chat'" : ""});
  END IF;
  RETURN v_left;
END
$fn$;
GRANT INSERT ON public.${log} TO service_role;
GRANT USAGE ON SEQUENCE public.${log}_id_seq TO service_role;
GRANT EXECUTE ON FUNCTION public.${fn}(uuid) TO service_role;`;
}

async function sql(c: Client, file: string, text: string): Promise<void> {
  try {
    await inTransaction(c, () => c.query(text));
  } catch (e) {
    throw explainSqlError(e, file, text);
  }
}

/** A scratch database, marked as this project's (operations/shared/pgserver.ts): only such a database is ever dropped. */
async function createDb(adminUrl: string, name: string): Promise<string> {
  return createDatabase(adminUrl, name);
}

async function dropDb(adminUrl: string, name: string): Promise<void> {
  await dropDatabase(adminUrl, name);
}

/** The v1 database: the baseline (which installs v1) and `orgs` organizations with a large unified balance. */
export async function prepareV1(url: string, orgs: number): Promise<void> {
  const c = await connect(url);
  try {
    await ensureBaseline(c);
    await insertOrgs(c, orgs, false);
  } finally {
    await c.end();
  }
}

/**
 * The credit schema (its columns, constraints and tables) and the catalogues from the default config, as `up` applies
 * them; with logIndex, also the log's index, built CONCURRENTLY (outside a transaction).
 */
export async function installCreditSchema(c: Client, url: string, opts: { logIndex: boolean }): Promise<void> {
  const config = parseConfig({ databaseUrl: url });
  for (const s of CREDIT_SCHEMA_OBJECTS) {
    if (s.transaction !== false) await sql(c, s.file, loadSql(s.file).text);
    else if (opts.logIndex) await c.query(loadSql(s.file).text); // CREATE INDEX CONCURRENTLY
  }
  await sql(c, "(generated from guardian:actions)", actionCatalogueSql(config));
  await sql(c, "(generated from guardian:plans)", planCatalogueSql(config));
}

/** The v2 database: baseline, credit engine, the reference function, `orgs` multi organizations and the hot one. */
export async function prepareV2(url: string, orgs: number): Promise<void> {
  const c = await connect(url);
  try {
    await ensureBaseline(c);
    await installCreditSchema(c, url, { logIndex: true });
    for (const f of CREDIT_FUNCTIONS) await sql(c, f.file, loadSql(f.file).text);
    await sql(c, "(bench reference function)", REFERENCE_FUNCTION);
    await insertOrgs(c, orgs, true);
  } finally {
    await c.end();
  }
}

/** Organizations 1..n (and 0, the hot one) with deterministic ids. */
async function insertOrgs(c: Client, n: number, multi: boolean): Promise<void> {
  await c.query(
    `INSERT INTO public.organizations (id, name, slug)
     SELECT ${orgUuid("g")}, 'bench ' || g, 'bench-' || g FROM generate_series(0, $1) g`,
    [n],
  );
  await c.query(
    `INSERT INTO public.organization_credits (organization_id, plan_name, total_credits, credits_remaining)
     SELECT ${orgUuid("g")}, 'premium', $2, $2 FROM generate_series(0, $1) g`,
    [n, HOT_ORG_CREDITS],
  );
  if (multi) {
    await c.query(
      `UPDATE public.organization_credits SET credit_model = 'multi', allocation_epoch = 1,
              ai_credits_total = $1, ai_credits_available = $1, whatsapp_credits_total = $1, whatsapp_credits_available = $1,
              email_credits_total = $1, email_credits_available = $1, sms_credits_total = $1, sms_credits_available = $1`,
      [HOT_ORG_CREDITS],
    );
  }
  if (multi) {
    await c.query(`INSERT INTO public.bench_min_pool (organization_id, pool) SELECT ${orgUuid("g")}, $2 FROM generate_series(0, $1) g`, [n, HOT_ORG_CREDITS]);
    await c.query("VACUUM ANALYZE public.bench_min_pool");
  }
  await c.query("VACUUM ANALYZE public.organization_credits");
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
const round2 = (x: number) => round(x, 2);

/** Median, lowest and highest. */
function spread(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { median: round2(m), min: s[0], max: s[s.length - 1] };
}

/** pgbench's path: /usr/bin/pgbench, else pgbench on PATH. */
export const pgbenchBin = () => (fs.existsSync("/usr/bin/pgbench") ? "/usr/bin/pgbench" : "pgbench");

/** Runs one pgbench case and computes its latency percentiles from the per-transaction log. Each connection starts
 *  as `role` (service_role unless given). */
export async function pgbench(
  bin: string,
  url: string,
  name: string,
  script: string,
  clients: number,
  durationSec: number,
  dir: string,
  role = "service_role",
): Promise<Omit<CaseResult, "round">> {
  const scriptFile = path.join(dir, `${name}.sql`);
  fs.writeFileSync(scriptFile, script);
  const prefix = path.join(dir, `${name}_c${clients}`);
  const args = [
    "-n",
    "-M",
    "prepared",
    "-T",
    String(durationSec),
    "-c",
    String(clients),
    "-j",
    String(Math.min(clients, 2)),
    "-f",
    scriptFile,
    "-l",
    `--log-prefix=${prefix}`,
    url,
  ];
  let stdout: string;
  try {
    ({ stdout } = await run(bin, args, {
      cwd: dir,
      env: { ...process.env, PGOPTIONS: `-c role=${role}` },
      maxBuffer: 16 * 1024 * 1024,
    }));
  } catch (e: any) {
    const why = redactSecrets(String(e.stderr ?? e.message), url);
    throw new Error(`pgbench ${name} at ${clients} client(s) failed: ${why.trim().split("\n").slice(-5).join("\n")}`);
  }
  const latenciesUs: number[] = [];
  const base = path.basename(prefix);
  // This run's per-transaction logs (<prefix>.<pid>[.<thread>]), removed once read: a later run of the same case (the
  // next round) must not count this one's transactions again.
  for (const f of fs.readdirSync(dir).filter((x) => x.startsWith(`${base}.`))) {
    for (const line of fs.readFileSync(path.join(dir, f), "utf8").split("\n")) {
      const cols = line.trim().split(/\s+/);
      if (cols.length >= 6 && /^\d+$/.test(cols[2])) latenciesUs.push(Number(cols[2]));
    }
    fs.rmSync(path.join(dir, f));
  }
  latenciesUs.sort((a, b) => a - b);
  const ms = (us: number) => round(us / 1000);
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? latenciesUs.length);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  return {
    case: name,
    clients,
    tps: round(tps, 1),
    transactions,
    failedTransactions: failed,
    latencyMs: {
      p50: ms(percentile(latenciesUs, 50)),
      p95: ms(percentile(latenciesUs, 95)),
      p99: ms(percentile(latenciesUs, 99)),
      mean: ms(latenciesUs.reduce((s, x) => s + x, 0) / Math.max(1, latenciesUs.length)),
      max: ms(latenciesUs[latenciesUs.length - 1] ?? NaN),
    },
  };
}

interface HotOrgSnapshot {
  successes: number;
  logRows: number;
  available: number;
}

/** The hot organization's counters; a run is checked on the difference of two snapshots (nothing is deleted, so an
 *  append-only log is fine). */
async function hotOrgSnapshot(url: string): Promise<HotOrgSnapshot> {
  const c = await connect(url);
  try {
    const hot = "00000000-0000-4000-8000-000000000000";
    const r = await c.query(
      `SELECT (SELECT count(*) FILTER (WHERE success) FROM public.credit_consumption_logs WHERE organization_id = $1)::bigint AS successes,
              (SELECT count(*) FROM public.credit_consumption_logs WHERE organization_id = $1)::bigint AS log_rows,
              (SELECT ai_credits_available FROM public.organization_credits WHERE organization_id = $1)::bigint AS available`,
      [hot],
    );
    return { successes: Number(r.rows[0].successes), logRows: Number(r.rows[0].log_rows), available: Number(r.rows[0].available) };
  } finally {
    await c.end();
  }
}

/** `xs` starting at its (k mod length)-th element, the ones before it moved to the end. */
function rotated<T>(xs: T[], k: number): T[] {
  return [...xs.slice(k % xs.length), ...xs.slice(0, k % xs.length)];
}

/** The in-server reading (InServerCost) of the cases in `plan`, `rounds` times, the order rotated per round. */
async function inServerCosts(plan: Array<[string, string]>, orgs: number, rounds: number, log: (s: string) => void): Promise<InServerCost[]> {
  const seen = new Map<string, { usPerCall: number; walBytesPerCall: number }[]>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, url] of rotated(plan, round)) {
      const c = await connect(url);
      try {
        await c.query("VACUUM"); // every table: the rounds before left rolled-back rows and index entries behind
        await c.query("BEGIN");
        await c.query(SUPABASE_PREAMBLE);
        const [{ lsn }] = (await c.query("SELECT pg_current_wal_insert_lsn() AS lsn")).rows;
        const t0 = process.hrtime.bigint();
        await c.query(`SELECT count(${CALL[name](orgUuid("i"))}) FROM generate_series(1, $1) i`, [orgs]);
        const us = Number(process.hrtime.bigint() - t0) / 1000;
        const [{ wal }] = (await c.query("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1) AS wal", [lsn])).rows;
        const r = { usPerCall: round2(us / orgs), walBytesPerCall: Math.round(Number(wal) / orgs) };
        seen.set(name, [...(seen.get(name) ?? []), r]);
        log(`bench: in-server round ${round + 1}: ${name}: ${r.usPerCall} µs and ${r.walBytesPerCall} WAL bytes per call`);
      } finally {
        await c.query("ROLLBACK").catch(() => undefined);
        await c.end();
      }
    }
  }
  return [...seen].map(([name, rs]) => ({
    case: name,
    usPerCall: spread(rs.map((r) => r.usPerCall)).median,
    walBytesPerCall: Math.round(spread(rs.map((r) => r.walBytesPerCall)).median),
    rounds: rs,
  }));
}

async function vacuum(url: string): Promise<void> {
  const c = await connect(url);
  try {
    await c.query("VACUUM ANALYZE public.organization_credits");
  } finally {
    await c.end();
  }
}

export async function benchRpc(adminUrl: string, opts: BenchRpcOptions = {}): Promise<BenchRpcResult> {
  const durationSec = opts.durationSec ?? 5;
  const clientCounts = opts.clients ?? [1, 8, 32];
  const orgs = opts.orgs ?? 3371;
  const caller = opts.caller ?? "supabase";
  const rounds = opts.rounds ?? 1;
  const bin = opts.pgbench ?? pgbenchBin();
  const log = opts.log ?? (() => undefined);
  const tag = crypto.randomBytes(4).toString("hex");
  const v1Name = `guardian_bench_v1_${tag}`;
  const v2Name = `guardian_bench_v2_${tag}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-bench-"));
  const s = scripts(orgs, caller);
  try {
    const [v1Url, v2Url] = [await createDb(adminUrl, v1Name), await createDb(adminUrl, v2Name)];
    await prepareV1(v1Url, orgs);
    await prepareV2(v2Url, orgs);
    const server = await connect(adminUrl).then(async (c) => {
      try {
        return String((await c.query("SHOW server_version")).rows[0].server_version);
      } finally {
        await c.end();
      }
    });

    const cases: CaseResult[] = [];
    const hotOrg: HotOrgResult[] = [];
    const plan: Array<[string, string]> = [
      ["v1", v1Url],
      ["bare_update", v2Url],
      ["plpgsql_reference", v2Url],
      ["bare_minimum", v2Url],
      ["bare_minimum_crm_keys", v2Url],
      ["v2", v2Url],
    ];
    let turn = 0;
    for (let round = 1; round <= rounds; round++) {
      for (const clients of clientCounts) {
        // Rotate the order per client count and round, so no case always runs first (cold) or last (biggest log table).
        const k = turn++;
        for (const [name, url] of rotated(plan, k)) {
          await vacuum(url);
          const r = { ...(await pgbench(bin, url, name, s[name], clients, durationSec, dir)), round };
          cases.push(r);
          log(`bench: round ${round}: ${name} at ${clients} client(s): ${r.tps} tps, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms`);
        }
        await vacuum(v2Url);
        const before = await hotOrgSnapshot(v2Url);
        const r = { ...(await pgbench(bin, v2Url, "v2_hot_org", s.v2_hot_org, clients, durationSec, dir)), round };
        const after = await hotOrgSnapshot(v2Url);
        const facts = {
          successes: after.successes - before.successes,
          creditsDebited: before.available - after.available,
          logRows: after.logRows - before.logRows,
        };
        const consistent = facts.successes === facts.creditsDebited && facts.logRows === r.transactions;
        hotOrg.push({ ...r, ...facts, consistent });
        log(
          `bench: round ${round}: v2_hot_org at ${clients} client(s): ${r.tps} tps, p99 ${r.latencyMs.p99} ms; ` +
            `${facts.successes} successes, ${facts.creditsDebited} credits debited, ${facts.logRows} log rows (${consistent ? "consistent" : "INCONSISTENT"})`,
        );
      }
    }

    const ratios: Ratio[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const clients of clientCounts) {
        const v2 = cases.find((c) => c.case === "v2" && c.clients === clients && c.round === round)!;
        for (const versus of VERSUS) {
          const b = cases.find((c) => c.case === versus && c.clients === clients && c.round === round)!;
          ratios.push({
            clients,
            round,
            versus,
            p50: round2(v2.latencyMs.p50 / b.latencyMs.p50),
            p99: round2(v2.latencyMs.p99 / b.latencyMs.p99),
            tps: round2(v2.tps / b.tps),
          });
        }
      }
    }
    const ratioSpread: RatioSpread[] = [];
    for (const clients of clientCounts) {
      for (const versus of VERSUS) {
        const xs = ratios.filter((x) => x.clients === clients && x.versus === versus);
        ratioSpread.push({ clients, versus, rounds: xs.length, tps: spread(xs.map((x) => x.tps)), p99: spread(xs.map((x) => x.p99)) });
      }
    }
    const inServer = await inServerCosts(
      plan.filter(([name]) => name in CALL),
      orgs,
      Math.max(5, rounds),
      log,
    );
    const at8 = cases.find((c) => c.case === "v2" && c.clients === 8 && c.round === 1);
    return {
      server,
      at: new Date().toISOString(),
      durationSec,
      orgs,
      caller,
      cases,
      rounds,
      hotOrg,
      ratios,
      ratioSpread,
      target: { clients: 8, p99Ms: 5, measuredP99Ms: at8?.latencyMs.p99 ?? null, met: at8 ? at8.latencyMs.p99 < 5 : null },
      inServer,
    };
  } finally {
    await dropDb(adminUrl, v1Name).catch(() => undefined);
    await dropDb(adminUrl, v2Name).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
