/**
 * The plan's rollback triggers, automated (contract: "Rollback triggers"):
 *
 *   npm run watch -- --stack <name> --minutes <m> [--auto-rollback] [--json] [--config-file F] [--cwd DIR]
 *
 * Watches a stack that is `multi` for --minutes, from the database itself, one reading every
 * guardian:watch.intervalSeconds (default 5 s):
 *   - calls: the log rows written since the last reading (the application's real calls, successes and refusals);
 *   - failures: synthetic calls of consume_credits_rpc, one per (organization, action) seen in the log since the last
 *     reading (or a sampled organization and the cheapest action when the log is quiet), callsPerReading of them, as
 *     service_role, each in a subtransaction rolled back (sql/watch/02_calls.sql). An exception is a failure; an
 *     answer, a business refusal included, is not. Why: a failing call rolls back its own log row and
 *     pg_stat_statements records only completed statements, so the database keeps no record of errors; and v2 gets
 *     no extra subtransaction or write per call;
 *   - latency: the synthetic calls' p95 against the baseline's p95, timed the same way in the transaction that
 *     installed v2 (sql/watch/01_baseline.sql, guardian.function_baselines): warm calls (each reading's first
 *     WARM_CALLS are not timed), across organizations;
 *   - invariants: the organizations active since the last reading (no pool below 0 or above its total; available +
 *     consumed in the epoch = the allocation: sql/watch/03_invariants.sql), and isolation as a sampled member
 *     (lib/isolation.ts on organization_credits).
 * Triggers (guardian:watch.*): failures > failureShare (10%) or p95 > latencyFactor (1.5) x baseline and at least
 * latencyFloorMs (0.5 ms) above it, over the readings of the last windowSeconds, and only with at least minCalls synthetic calls there (the reading says when it
 * has too few); any invariant broken, at once. The watch stops at the first trigger.
 *
 * Exit codes: 0 the window passed; 3 a trigger fired, nothing rolled back (with the command to run); 4 fired and rolled
 * back; 5 fired and the rollback failed; 1 the watch itself failed (connection lost, interrupted); 2 refused, nothing
 * done (the stack is not multi, no baseline, bad flags).
 *
 * --auto-rollback: a fired trigger sets guardian:creditModel unified in the stack settings file (the secret-free way
 * the rollback command writes config) and runs `pulumi up` through the Automation API: the contract's rollback,
 * recorded in the stack history like any update. The settings file then says unified: commit it (CI opens a pull
 * request, as its rollback job does), so the next deploy does not migrate forward again unasked.
 */
import * as fs from "fs";
import * as path from "path";
import type { Client } from "pg";
import { parseConfig, type GuardianConfig } from "../../lib/config";
import { connect, redactUrl } from "../../lib/db";
import { errorMessage } from "../../lib/errors";
import { isolationMatrix } from "../../lib/isolation";
import { discoverShape } from "../../lib/shape";
import { loadSql } from "../../lib/sql";
import { PROJECT_ROOT } from "../shared/pgserver";
import { openStack, readStackConfig } from "../shared/workspace";
import { pulumiCli, stackConfigFile } from "../stack/stackHistory";

export interface WatchOptions {
  stack: string;
  minutes: number;
  autoRollback?: boolean;
  configFile?: string;
  cwd?: string;
  /** Environment of the Pulumi CLI (backend, passphrase); default: this process's. */
  envVars?: Record<string, string>;
  /** One line per reading and message (default: console.log). */
  log?: (line: string) => void;
  /** --json: one object per reading and a final one (default: off). */
  json?: (doc: unknown) => void;
  /** Stops the watch early (tests; a signal): the watch then ends with exit 1. */
  signal?: AbortSignal;
}

export interface Reading {
  at: string;
  /** Log rows since the last reading: the application's calls. */
  calls: number;
  synthetic: number;
  failures: number;
  firstError?: string;
  p95Ms: number | null;
  baselineP95Ms: number;
  /** Over the window: synthetic calls, the failed share, p95; and whether there were enough to judge. */
  window: { calls: number; failureShare: number; p95Ms: number | null; enough: boolean };
  invariants: { checked: number; broken: { organization: string; broken: string }[]; isolation: string[] };
  fired: string | null;
}

export interface WatchResult {
  exitCode: 0 | 1 | 2 | 3 | 4 | 5;
  outcome: "passed" | "fired" | "rolled-back" | "rollback-failed" | "failed" | "refused";
  message: string;
  readings: Reading[];
  fired?: string;
}

/** Calls at the start of each reading that are not timed (still counted as calls): a transaction's first calls of v2
 *  pay PL/pgSQL's per-transaction set-up, 3 to 5 times a warm call (measured), and the baseline times warm calls. */
export const WARM_CALLS = 3;

const p95 = (xs: number[]) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)];
};

/** Which trigger a window fires, if any (pure: test/unit/watch.test.ts). */
export function judge(
  w: { calls: number; errors: number; ms: number[] },
  baselineP95: number,
  invariantsBroken: string[],
  t: GuardianConfig["watch"],
): { fired: string | null; window: Reading["window"] } {
  const share = w.calls ? w.errors / w.calls : 0;
  const windowP95 = p95(w.ms);
  const enough = w.calls >= t.minCalls;
  const window = { calls: w.calls, failureShare: share, p95Ms: windowP95, enough };
  if (invariantsBroken.length) return { fired: `invariant broken: ${invariantsBroken[0]}`, window };
  if (enough && share > t.failureShare) {
    return { fired: `function failures ${(share * 100).toFixed(1)}% of ${w.calls} calls > ${(t.failureShare * 100).toFixed(0)}%`, window };
  }
  if (enough && windowP95 !== null && windowP95 > t.latencyFactor * baselineP95 && windowP95 - baselineP95 >= t.latencyFloorMs) {
    return {
      fired:
        `latency p95 ${windowP95.toFixed(2)} ms > ${t.latencyFactor} x baseline ${baselineP95.toFixed(2)} ms (${(windowP95 / baselineP95).toFixed(2)}x), ` +
        `${(windowP95 - baselineP95).toFixed(2)} ms above it (floor ${t.latencyFloorMs} ms)`,
      window,
    };
  }
  return { fired: null, window };
}

/** One reading as a line. */
export function formatReading(r: Reading): string {
  const lat =
    r.p95Ms === null ? "p95 -" : `p95 ${r.p95Ms.toFixed(2)} ms (${(r.p95Ms / r.baselineP95Ms).toFixed(2)}x baseline ${r.baselineP95Ms.toFixed(2)} ms)`;
  const wp = r.window.p95Ms;
  const win = r.window.enough
    ? `window: ${r.window.calls} synthetic calls, ${(r.window.failureShare * 100).toFixed(1)}% failed` +
      (wp === null
        ? ""
        : `, p95 ${wp.toFixed(2)} ms (${(wp / r.baselineP95Ms).toFixed(2)}x, ${wp - r.baselineP95Ms >= 0 ? "+" : ""}${(wp - r.baselineP95Ms).toFixed(2)} ms)`)
    : `window: ${r.window.calls} synthetic calls, too few to judge failures or latency (minimum ${r.window.calls < 1 ? 1 : "guardian:watch.minCalls"})`;
  const inv = `invariants: ${r.invariants.checked} active org(s) checked, ${r.invariants.broken.length + r.invariants.isolation.length} broken`;
  return `watch: ${r.at} calls ${r.calls} | synthetic ${r.synthetic}, failures ${r.failures} | ${lat} | ${win} | ${inv}${r.fired ? ` | FIRED: ${r.fired}` : ""}`;
}

/** The watch's database session: its synthetic-call function, the organization and action it calls when the log is
 *  quiet, the log id it has read up to. */
export interface WatchSession {
  c: Client;
  profileRoleColumn: string;
  fallback: { org: string | null; action: string | null };
  lastId: number;
  invariantsSql: string;
}

/** Prepares a session on `c` for readings (the bench times one reading through the same code). */
export async function openSession(c: Client, profileRoleColumn: string): Promise<WatchSession> {
  await c.query(loadSql("watch/02_calls.sql").text);
  const fallback = (
    await c.query<{ org: string | null; action: string | null }>(
      `SELECT (SELECT oc.organization_id::text FROM public.organization_credits oc
                WHERE oc.credit_model = 'multi' AND EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
                ORDER BY oc.organization_id LIMIT 1) AS org,
              (SELECT action_type FROM public.credit_actions ORDER BY credits_cost, action_type LIMIT 1) AS action`,
    )
  ).rows[0];
  // Warm-up, not counted: the session's first calls compile the functions' plans.
  if (fallback.org) {
    await c.query(`SELECT * FROM pg_temp.guardian_watch_calls($1::uuid[], $2::text[])`, [Array(5).fill(fallback.org), Array(5).fill(fallback.action)]);
  }
  const lastId = Number((await c.query(`SELECT coalesce(max(id), 0)::bigint AS id FROM public.credit_consumption_logs`)).rows[0].id);
  return { c, profileRoleColumn, fallback, lastId, invariantsSql: loadSql("watch/03_invariants.sql").text };
}

/** One reading's database work: the log rows since the last reading, the synthetic calls of the (organization,
 *  action) pairs they show, the invariants of the organizations active since, isolation as a sampled member. */
export async function sample(session: WatchSession, callsPerReading: number) {
  const { c, fallback } = session;
  const seen = (
    await c.query<{ org: string; action: string; id: string }>(
      `SELECT organization_id::text AS org, action_type AS action, id::text FROM public.credit_consumption_logs
        WHERE id > $1 ORDER BY id DESC LIMIT 5000`,
      [session.lastId],
    )
  ).rows;
  const calls = seen.length;
  const since = session.lastId;
  if (seen.length) session.lastId = Math.max(session.lastId, ...seen.map((x) => Number(x.id)));
  const pairs = new Map<string, { org: string; action: string }>();
  for (const x of seen) if (pairs.size < callsPerReading) pairs.set(`${x.org}/${x.action}`, x);
  const list = [...pairs.values()];
  const quiet = fallback.org && fallback.action ? { org: fallback.org, action: fallback.action } : undefined;
  while (list.length < callsPerReading && (list.length || quiet)) list.push(list[list.length % Math.max(1, pairs.size)] ?? quiet!);
  // The first WARM_CALLS calls are calls (a failure counts) but are not timed: the baseline times warm calls.
  const batch = [...list.slice(0, WARM_CALLS), ...list];
  const r = (
    await c.query<{ calls: number; errors: number; ms: number[] | null; first_error: string | null }>(
      `SELECT * FROM pg_temp.guardian_watch_calls($1::uuid[], $2::text[], $3)`,
      [batch.map((x) => x.org), batch.map((x) => x.action), Math.min(WARM_CALLS, list.length)],
    )
  ).rows[0];
  const inv = (await c.query<{ checked: number; broken: { organization: string; broken: string }[] }>(session.invariantsSql, [since, 200])).rows[0];
  const iso = await isolationMatrix(c, session.profileRoleColumn, [{ table: "public.organization_credits", orgColumn: "organization_id" }]);
  return { calls, r, inv, iso };
}

export async function watchCommand(opts: WatchOptions): Promise<WatchResult> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const readings: Reading[] = [];
  const refuse = (message: string): WatchResult => ({ exitCode: 2, outcome: "refused", message: `watch refused: ${message}`, readings });
  if (!(opts.minutes > 0)) return refuse(`--minutes must be a number above 0, got ${opts.minutes}`);

  const workDir = opts.cwd ?? PROJECT_ROOT;
  let stack: Awaited<ReturnType<typeof openStack>>;
  let config: GuardianConfig;
  try {
    stack = await openStack({ stackName: opts.stack, workDir, envVars: opts.envVars });
    const raw = await readStackConfig(stack, opts.configFile);
    const values: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(raw)) {
      if (!k.startsWith("guardian:")) continue;
      const key = k.slice("guardian:".length);
      let value: unknown = v.value;
      try {
        value = typeof v.value === "string" && /^[[{]/.test(v.value) ? JSON.parse(v.value) : v.value;
      } catch {
        // a plain string
      }
      values[key] = value;
    }
    config = parseConfig(values);
  } catch (e) {
    return refuse(`stack ${opts.stack}: ${errorMessage(e)}`);
  }
  if (config.creditModel !== "multi") return refuse(`stack ${opts.stack} is ${config.creditModel}, not multi: there is nothing to watch`);
  const t = config.watch;

  let c: Client;
  try {
    c = await connect(config.databaseUrl);
  } catch (e) {
    return refuse(`cannot connect to ${redactUrl(config.databaseUrl)}: ${errorMessage(e)}`);
  }
  try {
    const baseline = (
      await c
        .query<{ p95_ms: number; calls: number }>(
          `SELECT p95_ms, calls FROM guardian.function_baselines WHERE to_regclass('guardian.function_baselines') IS NOT NULL
          ORDER BY id DESC LIMIT 1`,
        )
        .catch(() => ({ rows: [] as { p95_ms: number; calls: number }[] }))
    ).rows[0];
    if (!baseline?.p95_ms) return refuse("no latency baseline recorded (guardian.function_baselines): run pulumi up with this version first");
    const v2 = (await c.query(`SELECT to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2`)).rows[0].v2;
    if (!v2) return refuse("consume_credits_rpc v2 is not installed: the database is not multi");
    const shape = (await discoverShape(c, config.schema)).shape;
    if (!shape) return refuse("the database's shape is not the one the program migrated (see pulumi preview)");
    const session = await openSession(c, shape.profileRoleColumn);
    const window: { at: number; calls: number; errors: number; ms: number[] }[] = [];
    const until = Date.now() + opts.minutes * 60_000;
    log(
      `watch: stack ${opts.stack} (${redactUrl(config.databaseUrl)}) for ${opts.minutes} min, a reading every ${t.intervalSeconds} s; ` +
        `triggers: failures > ${(t.failureShare * 100).toFixed(0)}%, p95 > ${t.latencyFactor}x baseline ${baseline.p95_ms.toFixed(2)} ms ` +
        `and ${t.latencyFloorMs} ms above it, ` +
        `any invariant broken; failure and latency judged on the last ${t.windowSeconds} s with at least ${t.minCalls} calls`,
    );
    let fired: string | null = null;
    while (Date.now() < until && !fired) {
      if (opts.signal?.aborted) throw new Error("interrupted");
      const { calls, r, inv, iso } = await sample(session, t.callsPerReading);
      const now = Date.now();
      window.push({ at: now, calls: r.calls, errors: r.errors, ms: r.ms ?? [] });
      while (window.length && window[0].at < now - t.windowSeconds * 1000) window.shift();
      const agg = window.reduce((a, w) => ({ calls: a.calls + w.calls, errors: a.errors + w.errors, ms: a.ms.concat(w.ms) }), {
        calls: 0,
        errors: 0,
        ms: [] as number[],
      });
      const broken = [...inv.broken.map((b) => `${b.broken} (organization ${b.organization})`), ...iso.violations];
      const j = judge(agg, baseline.p95_ms, broken, t);
      const reading: Reading = {
        at: new Date(now).toISOString(),
        calls,
        synthetic: r.calls,
        failures: r.errors,
        ...(r.first_error ? { firstError: r.first_error } : {}),
        p95Ms: p95(r.ms ?? []),
        baselineP95Ms: baseline.p95_ms,
        window: j.window,
        invariants: { checked: inv.checked, broken: inv.broken, isolation: iso.violations },
        fired: j.fired,
      };
      readings.push(reading);
      log(formatReading(reading));
      if (r.first_error) log(`watch: first error of this reading: ${r.first_error}`);
      opts.json?.(reading);
      fired = j.fired;
      if (!fired && Date.now() + t.intervalSeconds * 1000 < until) await new Promise((res) => setTimeout(res, t.intervalSeconds * 1000));
      else if (!fired) break;
    }
    if (!fired)
      return done({
        exitCode: 0,
        outcome: "passed",
        message: `watch: passed: ${readings.length} reading(s) in ${opts.minutes} min, no trigger fired`,
        readings,
      });
    const command = `pulumi config set guardian:creditModel unified --stack ${opts.stack}${opts.configFile ? ` --config-file ${opts.configFile}` : ""} && pulumi up --stack ${opts.stack}`;
    if (!opts.autoRollback) {
      return done({
        exitCode: 3,
        outcome: "fired",
        fired,
        message: `watch: a rollback trigger fired: ${fired}. Nothing was rolled back. To roll back: ${command}`,
        readings,
      });
    }
    log(`watch: a rollback trigger fired: ${fired}; rolling back now (guardian:creditModel unified, pulumi up)`);
    try {
      const file = stackConfigFile(stack, opts.configFile);
      await pulumiCli(stack, ["config", "set", "guardian:creditModel", "unified", "--stack", stack.name, "--config-file", file]);
      await stack.up({
        onOutput: (s: string) => log(s.replace(/\n$/, "")),
        message: `watch: a rollback trigger fired (${fired}); npm run watch --auto-rollback`,
        ...(opts.configFile ? { configFile: path.resolve(opts.configFile) } : {}),
      } as any);
      const rel = path.relative(workDir, file);
      return done({
        exitCode: 4,
        outcome: "rolled-back",
        fired,
        message: `watch: a rollback trigger fired (${fired}) and the stack was rolled back to the unified model. ${fs.existsSync(file) ? `Commit ${rel} (guardian:creditModel: unified)` : "Commit the stack settings"} so the next deploy does not migrate forward again.`,
        readings,
      });
    } catch (e) {
      return done({
        exitCode: 5,
        outcome: "rollback-failed",
        fired,
        message: `watch: a rollback trigger fired (${fired}) and the rollback FAILED: ${errorMessage(e)}. Run it again: pulumi up --stack ${opts.stack}`,
        readings,
      });
    }
  } catch (e) {
    return done({ exitCode: 1, outcome: "failed", message: `watch: failed after ${readings.length} reading(s): ${errorMessage(e)}`, readings });
  } finally {
    await c.end().catch(() => undefined);
  }

  function done(r: WatchResult): WatchResult {
    log(r.message);
    opts.json?.({ final: true, exitCode: r.exitCode, outcome: r.outcome, fired: r.fired ?? null, readings: r.readings.length, message: r.message });
    return r;
  }
}
