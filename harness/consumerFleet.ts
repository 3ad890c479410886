/**
 * Zero downtime, proven: application traffic against consume_credits_rpc while the stack goes
 * seed -> up (multi) -> up (unified: rollback) -> up (multi), and the checks that nothing was lost, counted twice or
 * refused without reason. Used by test/zero-downtime.test.ts (a few hundred orgs) and by `npm run bench --
 * --zero-downtime` (at scale).
 *
 * The fleet: `consumers` connections (SET ROLE service_role, as a Supabase backend calls), each calling
 * consume_credits_rpc in a loop with mixed actions, on organizations it alone owns. Ownership is disjoint because v1,
 * which rollback restores byte for byte, reads the balance and writes it back without a row lock: two concurrent v1
 * calls on one organization lose an update by design (the bug Phase 3.5 fixes). With one caller per organization
 * every call is serialised per org in every model, so the books can be checked exactly; v2's own concurrency (many
 * callers, one org) is proven by the hot-org case of bench/rpc.ts and test/credit-engine.test.ts.
 *
 * Two-argument and four-argument calls. A two-argument call resolves in every phase: v1 is (uuid, text), v2 is
 * (uuid, text, integer DEFAULT 1, text DEFAULT NULL), and each function switch (v1 -> v2 in sql/functions, v2 -> v1
 * in sql/rollback/04_restore_v1.sql) drops one and creates the other in ONE transaction, so some function of that
 * name always answers. A four-argument call only resolves while v2 exists. Applications that send four arguments
 * know that (they deploy after the migration), so a refusal of a four-argument call is expected exactly when v2 does
 * not exist: before the first up switches to v2, and from rollback's restore until the next migration's switch.
 * The fleet cannot see the catalog at the instant the server resolved the name, and v2 does come and go while calls
 * are in flight: it appears in each migration's function switch and disappears in rollback's restore, each time in
 * a transaction that also writes a guardian.migration_journal row ('apply' of the v2 function, 'rollback'). So every
 * four-argument call is bracketed by two looks at the catalog, on a second ("witness") connection of the consumer:
 *   pre  = (v2 exists?, id of the latest such journal row)   just before the call
 *   post = the same                                           just after a call that failed with 42883
 * and the refusal is expected when v2 was absent at some moment of that bracket: pre says absent, or post says
 * absent, or the marker moved (a switch or a restore committed in between). It is a FAILURE when v2 existed before
 * and after and nothing touched it in between: then the name should have resolved. (An expected refusal can hide a
 * bug only inside the few milliseconds around a switch, where absence at resolution time cannot be ruled out from
 * the client; each switch is itself one transaction.) A first version looked only after the failure, and reported
 * two false failures at a migration's switch: calls sent just before v2 committed, looked at just after. An expected
 * refusal is counted as
 * `fourArgRefusedWithoutV2`, and the application's fallback, the same action with two arguments, is made.
 * Every other error (a thrown SQLSTATE, a result with another error_code) is a failure.
 *
 * Some four-argument calls repeat the key of the consumer's previous four-argument call on the same org (a client
 * retrying after a timeout): the result must be identical to the first, and it must not add a log row or a debit.
 */
import type { Client } from "pg";
import { DEFAULT_UNIFIED_COSTS, DEFAULT_PLANS, DEFAULT_SPLIT, POOLS } from "../lib/config";
import { connect } from "../lib/db";
import { mulberry32 } from "../operations/seed";
import { PauseGate } from "./pauseGate";

/** A deterministic source of choices for a fleet (operations/seed's PRNG). */
export const mulberry = (seed: number) => mulberry32(seed);

/** The baseline catalogue's actions (present in every phase, v1 included: v1 would insert an unknown one). */
export const FLEET_ACTIONS = ["ai_chat", "ai_assistant", "form_generation", "automation_run", "whatsapp_message", "email_send", "bulk_email", "sms_send"];
const V2 = "public.consume_credits_rpc(uuid,text,integer,text)";

export interface FleetOptions {
  url: string;
  /** Organizations the fleet may call for; split round-robin among consumers (each owns its share alone). */
  orgs: string[];
  consumers: number;
  /** Share of four-argument calls (default 0.5). */
  fourArgShare?: number;
  /** Share of four-argument calls that replay the previous key (default 0.05). */
  replayShare?: number;
  /** Pause between calls of one consumer, ms (default 0: back to back). */
  thinkMs?: number;
  /** A tag making idempotency keys unique across runs on one database. */
  tag: string;
  /** Deterministic choices (default: Math.random). */
  random?: () => number;
}

export interface CallRecord {
  /** Date.now() when the call was sent, and its duration in ms. */
  at: number;
  ms: number;
  /** A four-argument call, and whether it was refused because v2 did not exist. */
  four?: boolean;
  refusedWithoutV2?: boolean;
}

export interface OrgTally {
  successes: number;
  /** Unified cost (credits_cost x quantity) of the successes: what credits_consumed of their log rows must sum to. */
  unifiedCost: number;
  /** Genuine INSUFFICIENT_CREDITS (v2) and 'Insufficient credits' (v1) refusals: each has one log row. */
  refusals: number;
}

export interface FleetReport {
  calls: number;
  twoArg: number;
  fourArg: number;
  successes: number;
  refusals: number;
  replays: number;
  replayMismatches: string[];
  fourArgRefusedWithoutV2: number;
  /** Everything that is not a success, a genuine refusal, a replay or an expected four-argument refusal. */
  failures: string[];
  failureCount: number;
  perOrg: Map<string, OrgTally>;
  latencies: CallRecord[];
}

interface Consumer {
  c: Client;
  /** Looks at the catalog and the journal around four-argument calls (as the owner: the journal is not the Data API's). */
  w: Client;
  orgs: string[];
  stopped: boolean;
  loop?: Promise<void>;
  lastKey?: { org: string; key: string; result: any; action: string; qty: number };
  n: number;
}

interface Witness {
  present: boolean;
  /** Id of the latest journal row of a v2 switch or a rollback restore (0 before the journal exists). */
  marker: number;
}

async function witness(w: Client): Promise<Witness> {
  const r = (await w.query(`SELECT to_regprocedure('${V2}') IS NOT NULL AS present, to_regclass('guardian.migration_journal') IS NOT NULL AS journal`)).rows[0];
  let marker = 0;
  if (r.journal) {
    marker = Number(
      (
        await w.query(
          `SELECT coalesce(max(id), 0)::bigint AS m FROM guardian.migration_journal
        WHERE step = 'rollback' OR (step = 'apply' AND object_name = 'function ${V2}')`,
        )
      ).rows[0].m,
    );
  }
  return { present: r.present, marker };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** The median (the mean of the two middle values of an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A fleet of consumers; start(), pause()/resume() around checks, stop() for the report. */
export class ConsumerFleet {
  private consumers: Consumer[] = [];
  private readonly gate = new PauseGate();
  readonly report: FleetReport = {
    calls: 0,
    twoArg: 0,
    fourArg: 0,
    successes: 0,
    refusals: 0,
    replays: 0,
    replayMismatches: [],
    fourArgRefusedWithoutV2: 0,
    failures: [],
    failureCount: 0,
    perOrg: new Map(),
    latencies: [],
  };
  private readonly rnd: () => number;

  constructor(private readonly o: FleetOptions) {
    this.rnd = o.random ?? Math.random;
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.o.consumers; i++) {
      const c = await connect(this.o.url, { application_name: `guardian-consumer-${i}` });
      await c.query("SET ROLE service_role");
      const w = await connect(this.o.url, { application_name: `guardian-consumer-${i}-witness` });
      this.consumers.push({ c, w, orgs: this.o.orgs.filter((_, k) => k % this.o.consumers === i), stopped: false, n: 0 });
    }
    for (const [i, k] of this.consumers.entries()) k.loop = this.run(k, i);
  }

  /** Stops issuing calls and waits for the calls in flight: the database is quiescent for the fleet's orgs. */
  pause(): Promise<void> {
    return this.gate.pause();
  }

  resume(): void {
    this.gate.resume();
  }

  async stop(): Promise<FleetReport> {
    for (const k of this.consumers) k.stopped = true;
    this.resume();
    await Promise.all(this.consumers.map((k) => k.loop));
    await Promise.all(this.consumers.flatMap((k) => [k.c.end().catch(() => undefined), k.w.end().catch(() => undefined)]));
    return this.report;
  }

  private tally(org: string): OrgTally {
    let t = this.report.perOrg.get(org);
    if (!t) this.report.perOrg.set(org, (t = { successes: 0, unifiedCost: 0, refusals: 0 }));
    return t;
  }

  private fail(what: string): void {
    this.report.failureCount++;
    if (this.report.failures.length < 50) this.report.failures.push(what);
  }

  private async run(k: Consumer, index: number): Promise<void> {
    const pick = <T>(xs: T[]) => xs[Math.floor(this.rnd() * xs.length)];
    while (!k.stopped) {
      if (await this.gate.waited()) continue;
      if (!k.orgs.length) return;
      await this.gate.step(async () => {
        try {
          const replay = k.lastKey && this.rnd() < (this.o.replayShare ?? 0.05);
          const four = replay || this.rnd() < (this.o.fourArgShare ?? 0.5);
          const org = replay ? k.lastKey!.org : pick(k.orgs);
          const action = replay ? k.lastKey!.action : pick(FLEET_ACTIONS);
          const qty = replay ? k.lastKey!.qty : four ? 1 + Math.floor(this.rnd() * 3) : 1;
          const key = replay ? k.lastKey!.key : `zd-${this.o.tag}-${index}-${k.n++}`;
          await this.call(k, org, action, qty, four ? key : undefined, !!replay);
        } catch (e: any) {
          this.fail(`client: ${e?.code ?? ""} ${e?.message ?? e}`);
        }
      });
      if (this.o.thinkMs) await new Promise((r) => setTimeout(r, this.o.thinkMs));
    }
  }

  private async call(k: Consumer, org: string, action: string, qty: number, key: string | undefined, replay: boolean): Promise<void> {
    const rep = this.report;
    const at = Date.now();
    const t0 = process.hrtime.bigint();
    let t1 = t0; // when the call itself was sent (after the witness look, for four-argument calls)
    let result: any;
    const four = key !== undefined;
    const rec: CallRecord = { at, ms: 0, four };
    let pre: Witness | undefined;
    try {
      rep.calls++;
      if (four) {
        rep.fourArg++;
        pre = await witness(k.w);
        t1 = process.hrtime.bigint();
        rec.at = Date.now();
        result = (await k.c.query(`SELECT public.consume_credits_rpc($1::uuid, $2::text, $3::int, $4::text) AS r`, [org, action, qty, key])).rows[0].r;
      } else {
        rep.twoArg++;
        result = (await k.c.query(`SELECT public.consume_credits_rpc($1::uuid, $2::text) AS r`, [org, action])).rows[0].r;
      }
    } catch (e: any) {
      if (e?.code === "42883" && four) {
        rec.ms = Number(process.hrtime.bigint() - t1) / 1e6;
        const post = await witness(k.w);
        if (pre!.present && post.present && pre!.marker === post.marker) {
          this.fail(`four-argument call refused (42883) although ${V2} existed before and after it and no switch committed in between: ${e.message}`);
          return;
        }
        rep.fourArgRefusedWithoutV2++;
        rec.refusedWithoutV2 = true;
        // The application's fallback: the same action, two arguments (quantity 1, no key).
        if (replay) k.lastKey = undefined;
        return this.call(k, org, action, 1, undefined, false);
      }
      this.fail(`${four ? "four" : "two"}-argument call ${action} x${qty} for ${org}: SQLSTATE ${e?.code} ${e?.message}`);
      return;
    } finally {
      if (!rec.ms) rec.ms = Number(process.hrtime.bigint() - t1) / 1e6;
      rep.latencies.push(rec);
    }

    if (replay) {
      rep.replays++;
      if (JSON.stringify(result) !== JSON.stringify(k.lastKey!.result)) {
        if (rep.replayMismatches.length < 20)
          rep.replayMismatches.push(`${org} key ${key}: first ${JSON.stringify(k.lastKey!.result)}, replay ${JSON.stringify(result)}`);
      }
      return;
    }
    if (four) k.lastKey = { org, key: key!, result, action, qty };
    const t = this.tally(org);
    if (result?.success === true) {
      rep.successes++;
      t.successes++;
      t.unifiedCost += DEFAULT_UNIFIED_COSTS[action] * qty;
      if (result.credits_consumed !== undefined && result.credits_consumed !== DEFAULT_UNIFIED_COSTS[action] * qty) {
        this.fail(`${org} ${action} x${qty}: credits_consumed ${result.credits_consumed}, expected ${DEFAULT_UNIFIED_COSTS[action] * qty}`);
      }
      return;
    }
    // v2: INSUFFICIENT_CREDITS with the short pool's figures; v1: 'Insufficient credits' with its own.
    const genuineV2 = result?.error_code === "INSUFFICIENT_CREDITS" && Number(result.available) < Number(result.required);
    const genuineV1 =
      result?.error === "Insufficient credits" && result.error_code === undefined && Number(result.remaining_credits) < Number(result.required_credits);
    if (genuineV2 || genuineV1) {
      rep.refusals++;
      t.refusals++;
      return;
    }
    this.fail(`${four ? "four" : "two"}-argument call ${action} x${qty} for ${org}: ${JSON.stringify(result)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The books

/** The contract's allocation rule, in TypeScript (test/helpers/allocation.ts has the same; kept here so the bench
 *  does not import from test/). */
export function expectedAvailable(
  planName: string | null,
  totalCredits: number,
  creditsRemaining: number,
): { total: Record<string, number>; available: Record<string, number> } {
  const key = (planName ?? "").trim().toLowerCase();
  const plan = Object.hasOwn(DEFAULT_PLANS, key) ? DEFAULT_PLANS[key] : undefined;
  if (plan) {
    const p = { ai: plan.ai, whatsapp: plan.whatsapp, email: plan.email, sms: plan.sms };
    return { total: { ...p }, available: { ...p } };
  }
  const share = (n: number) => {
    const out: Record<string, number> = {};
    let rest = n;
    for (const pool of POOLS) {
      if (pool === "ai") continue;
      out[pool] = Math.floor(n * DEFAULT_SPLIT[pool] + 1e-9);
      rest -= out[pool];
    }
    out.ai = rest;
    return out;
  };
  return { total: share(Math.max(0, totalCredits)), available: share(Math.max(0, creditsRemaining)) };
}

const PAGE = 50_000;

/** Every organization_credits row with its logged consumption, page by page (keyset on organization_id). */
async function* pages(c: Client, sql: string, params: unknown[]): AsyncGenerator<any[]> {
  let after = "00000000-0000-0000-0000-000000000000";
  for (;;) {
    const rows = (await c.query(sql, [after, PAGE, ...params])).rows;
    if (!rows.length) return;
    yield rows;
    after = rows[rows.length - 1].organization_id;
  }
}

/**
 * Multi model: every org is multi, and for each pool total = allocation (computed in TypeScript from the row's plan
 * and total) and available + consumed in its current epoch = the pools the epoch started with (guardian.allocations,
 * recorded by the backfill and the allocation trigger: credits_remaining moves with v2's unified debit, so they
 * cannot be recomputed from today's row). Returns the violations (at most 20) and the number of orgs checked.
 */
export async function checkMulti(url: string): Promise<{ orgs: number; violations: string[] }> {
  const c = await connect(url);
  const violations: string[] = [];
  let orgs = 0;
  try {
    const sql = `
      SELECT oc.organization_id, oc.plan_name, oc.total_credits, oc.credits_remaining, oc.credit_model, oc.allocation_epoch,
             ${POOLS.map((p) => `oc.${p}_credits_total AS ${p}_total, oc.${p}_credits_available AS ${p}_available, coalesce(s.${p}, 0)::bigint AS ${p}_consumed, al.${p} AS ${p}_allocated`).join(",\n             ")}
        FROM public.organization_credits oc
        LEFT JOIN guardian.allocations al ON al.organization_id = oc.organization_id AND al.epoch = oc.allocation_epoch
        LEFT JOIN LATERAL (
          SELECT ${POOLS.map((p) => `sum(l.${p}_consumed) AS ${p}`).join(", ")}
            FROM public.credit_consumption_logs l
           WHERE l.organization_id = oc.organization_id AND l.success AND l.credit_model = 'multi'
             AND l.allocation_epoch = oc.allocation_epoch
        ) s ON true
       WHERE oc.organization_id > $1::uuid
       ORDER BY oc.organization_id LIMIT $2`;
    for await (const rows of pages(c, sql, [])) {
      for (const o of rows) {
        orgs++;
        if (o.credit_model !== "multi") {
          if (violations.length < 20) violations.push(`${o.organization_id}: credit_model ${o.credit_model}, expected multi`);
          continue;
        }
        const want = expectedAvailable(o.plan_name, o.total_credits, 0);
        if (o.ai_allocated === null && violations.length < 20) violations.push(`${o.organization_id}: no allocation recorded for epoch ${o.allocation_epoch}`);
        for (const p of POOLS) {
          const have = Number(o[`${p}_available`]) + Number(o[`${p}_consumed`]);
          want.available[p] = Number(o[`${p}_allocated`]);
          if (o[`${p}_total`] !== want.total[p] || have !== want.available[p]) {
            if (violations.length < 20) {
              violations.push(
                `${o.organization_id} (${JSON.stringify(o.plan_name)}, epoch ${o.allocation_epoch}) ${p}: total ${o[`${p}_total`]} ` +
                  `(expected ${want.total[p]}), available ${o[`${p}_available`]} + consumed ${o[`${p}_consumed`]} = ${have} (expected ${want.available[p]})`,
              );
            }
          }
        }
      }
    }
  } finally {
    await c.end();
  }
  return { orgs, violations };
}

/**
 * Unified model after rollback: credits_remaining = max(0, value in the backup - unified cost of every success since
 * the backup), before or after the org's flip back: v2 took each success's unified cost from credits_remaining too
 * (floored at 0), so the rollback recomputed nothing. (Every write here is a debit, so flooring at each step and
 * once at the end agree.)
 * `boundaryLogId` is the largest log id when the fleet was paused after the migration (every success with a larger
 * id was made during or after the rollback): successes with a larger id served as 'unified' (by v2 after the org's
 * flip back) or by v1 (credit_model NULL) come after the flip back; every other success since the backup, before.
 * Without the floor this is simply "backup value minus consumption since" (docs/architecture.md, Invariants).
 */
export async function checkUnifiedAfterRollback(url: string, backupSchema: string, boundaryLogId: number): Promise<{ orgs: number; violations: string[] }> {
  if (!/^guardian_backup_[0-9a-f_]+$/.test(backupSchema)) throw new Error(`unexpected backup schema name ${backupSchema}`);
  const c = await connect(url);
  const violations: string[] = [];
  let orgs = 0;
  try {
    const sql = `
      SELECT oc.organization_id, oc.credit_model, oc.credits_remaining, b.credits_remaining AS backup_value,
             coalesce(s.before_flip, 0)::bigint AS before_flip, coalesce(s.after_flip, 0)::bigint AS after_flip
        FROM public.organization_credits oc
        LEFT JOIN ${backupSchema}.organization_credits b USING (organization_id)
        LEFT JOIN LATERAL (
          SELECT sum(l.credits_consumed) FILTER (WHERE NOT (l.id > $3 AND (l.credit_model IS NULL OR l.credit_model = 'unified'))) AS before_flip,
                 sum(l.credits_consumed) FILTER (WHERE l.id > $3 AND (l.credit_model IS NULL OR l.credit_model = 'unified')) AS after_flip
            FROM public.credit_consumption_logs l
           WHERE l.organization_id = oc.organization_id AND l.success
             AND NOT EXISTS (SELECT 1 FROM ${backupSchema}.credit_consumption_logs x WHERE x.id = l.id)
        ) s ON true
       WHERE oc.organization_id > $1::uuid
       ORDER BY oc.organization_id LIMIT $2`;
    for await (const rows of pages(c, sql, [boundaryLogId])) {
      for (const o of rows) {
        orgs++;
        // An org that was already below zero in the backup (v1 races there) keeps its value until its first success.
        const spent = Number(o.before_flip) + Number(o.after_flip);
        const want = spent === 0 ? Number(o.backup_value) : Math.max(0, Number(o.backup_value) - spent);
        if (o.credit_model !== "unified" || o.backup_value === null || o.credits_remaining !== want) {
          if (violations.length < 20) {
            violations.push(
              `${o.organization_id}: ${o.credit_model}, credits_remaining ${o.credits_remaining}, expected ${spent === 0 ? "the backup value" : `max(0, ${o.backup_value} - ${o.before_flip} - ${o.after_flip})`} = ${want}`,
            );
          }
        }
      }
    }
  } finally {
    await c.end();
  }
  return { orgs, violations };
}

/**
 * Every success the fleet saw has exactly one log row and every genuine refusal one (success = false), per org,
 * and credits_consumed of the successes sums to their unified cost. `sinceLogId`: the largest log id before the fleet
 * started. Returns the mismatches (at most 20) and the totals on both sides.
 */
export async function checkLedger(
  url: string,
  report: FleetReport,
  sinceLogId: number,
): Promise<{
  mismatches: string[];
  logSuccesses: number;
  logRefusals: number;
  clientSuccesses: number;
  clientRefusals: number;
}> {
  const c = await connect(url);
  try {
    const rows = (
      await c.query(
        `SELECT organization_id::text AS org,
              count(*) FILTER (WHERE success)::int AS successes,
              count(*) FILTER (WHERE NOT success)::int AS refusals,
              coalesce(sum(credits_consumed) FILTER (WHERE success), 0)::bigint AS cost
         FROM public.credit_consumption_logs WHERE id > $1 GROUP BY 1`,
        [sinceLogId],
      )
    ).rows;
    const mismatches: string[] = [];
    const seen = new Set<string>();
    let logSuccesses = 0;
    let logRefusals = 0;
    for (const r of rows) {
      seen.add(r.org);
      logSuccesses += r.successes;
      logRefusals += r.refusals;
      const t = report.perOrg.get(r.org) ?? { successes: 0, unifiedCost: 0, refusals: 0 };
      if (t.successes !== r.successes || t.refusals !== r.refusals || t.unifiedCost !== Number(r.cost)) {
        if (mismatches.length < 20) {
          mismatches.push(
            `${r.org}: client saw ${t.successes} successes (cost ${t.unifiedCost}) and ${t.refusals} refusals; ` +
              `the log has ${r.successes} successes (credits_consumed ${r.cost}) and ${r.refusals} refusals`,
          );
        }
      }
    }
    for (const [org, t] of report.perOrg) {
      if (!seen.has(org) && (t.successes || t.refusals) && mismatches.length < 20)
        mismatches.push(`${org}: client saw ${t.successes} successes, the log has none`);
    }
    return { mismatches, logSuccesses, logRefusals, clientSuccesses: report.successes, clientRefusals: report.refusals };
  } finally {
    await c.end();
  }
}

export async function maxLogId(url: string): Promise<number> {
  const c = await connect(url);
  try {
    return Number((await c.query(`SELECT coalesce(max(id), 0)::bigint AS m FROM public.credit_consumption_logs`)).rows[0].m);
  } finally {
    await c.end();
  }
}

/** Organizations the fleet may own: every one with a credit account, except expired trials (TRIAL_EXPIRED is a
 *  business refusal of v2 that v1 does not make; it is not what this proof is about). */
export async function fleetOrgs(url: string, limit?: number): Promise<string[]> {
  const c = await connect(url);
  try {
    return (
      await c.query(
        `SELECT organization_id::text AS id FROM public.organization_credits
        WHERE NOT (is_trial AND cycle_end_date < now()) ORDER BY organization_id ${limit ? `LIMIT ${Math.floor(limit)}` : ""}`,
      )
    ).rows.map((r: any) => r.id);
  } finally {
    await c.end();
  }
}

/** What the fleet did between two instants (calls by their start time). */
export function phaseStats(report: FleetReport, from: number, to: number) {
  const calls = report.latencies.filter((c) => c.at >= from && c.at < to);
  return {
    calls: calls.length,
    fourArg: calls.filter((c) => c.four).length,
    refusedWithoutV2: calls.filter((c) => c.refusedWithoutV2).length,
    latency: latencySummary(calls),
  };
}

export function latencySummary(calls: CallRecord[], from = -Infinity, to = Infinity): { calls: number; p50: number; p95: number; p99: number; max: number } {
  const ms = calls
    .filter((c) => c.at >= from && c.at <= to)
    .map((c) => c.ms)
    .sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { calls: ms.length, p50: r(percentile(ms, 50)), p95: r(percentile(ms, 95)), p99: r(percentile(ms, 99)), max: r(ms[ms.length - 1] ?? NaN) };
}
