/**
 * Synthetic Guardian organizations, for rehearsals, tests and benchmarks: the operation (scripts/seed.ts is its
 * command line).
 *
 * 1. Creates the pre-Phase-3.5 schema where it is missing (lib/baseline.ts); on a database that has it (a real
 *    Supabase) nothing is changed.
 * 2. Adds N organizations with a realistic plan mix, their organization_credits row, profiles (auth.users first) and
 *    consumption history (./generator.ts). `orgs: 0` stops after step 1.
 *
 * Re-running: slugs are `<name>-s<S>-<i>`, unique per (S, i). Organizations already present (same id or slug) are
 * skipped with everything that belongs to them, so re-running a seed adds nothing, a larger orgs with the same seed
 * adds only the missing tail, and another seed adds N more organizations with distinct slugs.
 */
import type { Client } from "pg";
import { type BaselineResult, ensureBaseline } from "../../lib/baseline";
import { connect, inTransaction } from "../../lib/db";
import { GuardianRefusal } from "../../lib/errors";
import { Batch, generate, startOfUtcDay } from "./generator";

export * from "./generator";

// ---------------------------------------------------------------------------------------------------------------
// Writing

async function insertBatch(c: Client, all: Batch): Promise<Batch> {
  return inTransaction(c, async () => {
    const ins = await c.query(
      `INSERT INTO public.organizations (id, name, slug, created_at, updated_at)
       SELECT id, name, slug, at, at FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS t(id, name, slug, at)
       ON CONFLICT DO NOTHING
       RETURNING id`,
      [all.orgId, all.orgName, all.orgSlug, all.orgCreated],
    );
    const b = ins.rowCount === all.size ? all : all.only(new Set(ins.rows.map((x: any) => x.id)));
    if (b.size > 0) {
      await c.query(
        `INSERT INTO public.organization_credits
           (organization_id, plan_name, total_credits, credits_remaining, cycle_start_date, cycle_end_date, is_trial, created_at, updated_at)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::timestamptz[], $7::bool[],
                              $8::timestamptz[], $9::timestamptz[])`,
        [b.orgId, b.plan, b.total, b.remaining, b.cycleStart, b.cycleEnd, b.isTrial, b.orgCreated, b.creditsUpdated],
      );
    }
    if (b.userId.length > 0) {
      await c.query(
        `INSERT INTO auth.users (id, email, created_at)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[])
         ON CONFLICT (id) DO NOTHING`,
        [b.userId, b.userEmail, b.userCreated],
      );
      await c.query(
        `INSERT INTO public.profiles (id, organization_id, role, email, created_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
         ON CONFLICT (id) DO NOTHING`,
        [b.userId, b.userOrg, b.userRole, b.userEmail, b.userCreated],
      );
    }
    if (b.logOrg.length > 0) {
      await c.query(
        `INSERT INTO public.credit_consumption_logs
           (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, created_at)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::bool[], $6::text[], $7::timestamptz[])`,
        [b.logOrg, b.logAction, b.logConsumed, b.logRemaining, b.logSuccess, b.logError, b.logAt],
      );
    }
    return b;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Public API

export interface SeedOptions {
  databaseUrl: string;
  /** Organizations to add (0: the schema only). */
  orgs: number;
  /** Default 1. Organization i of seed S is always the same organization. */
  seed?: number;
  /** Progress lines (the CLI prints them to stderr; summary() gives the final report). Default: silent. */
  log?: (line: string) => void;
  /** Timestamps are offsets from this instant. Default: the start of the current UTC day. */
  anchor?: Date;
  /** Organizations per transaction. Default 10,000. */
  batchSize?: number;
}

export interface SeedResult {
  seed: number;
  baseline: BaselineResult;
  orgsRequested: number;
  /** Organizations this run inserted. */
  orgsAdded: number;
  /** Organizations of this seed already in the database (skipped with their profiles and history). */
  orgsSkipped: number;
  /** Added organizations per plan_name exactly as stored. */
  orgsPerPlan: Record<string, number>;
  trials: { active: number; expired: number };
  negativeBalances: number;
  orgsWithoutProfile: number;
  profiles: Record<"user" | "admin" | "super_admin", number>;
  logs: { success: number; failed: number };
  seconds: number;
  orgsPerSecond: number;
}

/** Raised when the database cannot be reached; its message names the server with the password redacted. */
export class SeedConnectError extends GuardianRefusal {
  constructor(message: string) {
    super(message, "SeedConnectError");
  }
}

export const MAX_ORGS = 10_000_000;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

export async function seed(opts: SeedOptions): Promise<SeedResult> {
  const seedNo = opts.seed ?? 1;
  const log = opts.log ?? (() => undefined);
  const batchSize = opts.batchSize ?? 10_000;
  const anchor = opts.anchor ?? startOfUtcDay();
  if (!Number.isInteger(opts.orgs) || opts.orgs < 0 || opts.orgs > MAX_ORGS) {
    throw new RangeError(`orgs: expected an integer from 0 to ${fmt(MAX_ORGS)}, got ${opts.orgs}`);
  }
  if (!Number.isInteger(seedNo) || seedNo < 0 || seedNo > 0xffffffff) {
    throw new RangeError(`seed: expected an integer from 0 to 4294967295, got ${seedNo}`);
  }

  let c: Client;
  try {
    c = await connect(opts.databaseUrl, { application_name: "guardian-seed" });
  } catch (e: any) {
    throw new SeedConnectError(e.message);
  }
  const result: SeedResult = {
    seed: seedNo,
    baseline: { created: [] },
    orgsRequested: opts.orgs,
    orgsAdded: 0,
    orgsSkipped: 0,
    orgsPerPlan: {},
    trials: { active: 0, expired: 0 },
    negativeBalances: 0,
    orgsWithoutProfile: 0,
    profiles: { user: 0, admin: 0, super_admin: 0 },
    logs: { success: 0, failed: 0 },
    seconds: 0,
    orgsPerSecond: 0,
  };
  try {
    result.baseline = await ensureBaseline(c);
    log(result.baseline.created.length ? `seed: baseline created (${result.baseline.created.join(", ")})` : "seed: baseline already present, left as it is");

    const started = process.hrtime.bigint();
    for (let from = 0; from < opts.orgs; from += batchSize) {
      const to = Math.min(opts.orgs, from + batchSize);
      const added = await insertBatch(c, generate(seedNo, from, to, anchor));
      result.orgsAdded += added.size;
      result.orgsSkipped += to - from - added.size;
      tally(result, added);
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      log(`seed: ${fmt(to)}/${fmt(opts.orgs)} orgs (${Math.floor((100 * to) / opts.orgs)}%), ${fmt(to / Math.max(secs, 1e-3))} orgs/s`);
    }
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    result.orgsPerSecond = opts.orgs ? opts.orgs / Math.max(result.seconds, 1e-3) : 0;
  } finally {
    await c.end().catch(() => undefined);
  }
  return result;
}

function tally(res: SeedResult, b: Batch): void {
  const withProfile = new Set(b.userOrg);
  b.orgId.forEach((id, i) => {
    res.orgsPerPlan[b.plan[i]] = (res.orgsPerPlan[b.plan[i]] ?? 0) + 1;
    if (b.isTrial[i]) b.expired[i] ? res.trials.expired++ : res.trials.active++;
    if (b.remaining[i] < 0) res.negativeBalances++;
    if (!withProfile.has(id)) res.orgsWithoutProfile++;
  });
  for (const role of b.userRole) res.profiles[role as keyof SeedResult["profiles"]]++;
  for (const ok of b.logSuccess) ok ? res.logs.success++ : res.logs.failed++;
}

/** The final report: organizations per plan_name as stored (quoted, so ' Premium' and '' are visible), then the rest. */
export function summary(r: SeedResult): string[] {
  const lines = [
    `seed: done: seed ${r.seed}, ${fmt(r.orgsAdded)} orgs added` +
      (r.orgsSkipped ? `, ${fmt(r.orgsSkipped)} already present (skipped)` : "") +
      (r.orgsRequested ? ` in ${r.seconds.toFixed(1)} s (${fmt(r.orgsPerSecond)} orgs/s)` : " (schema only)"),
  ];
  if (r.orgsAdded === 0) return lines;
  const plans = Object.entries(r.orgsPerPlan).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const w = Math.max(...plans.map(([p]) => `'${p}'`.length), "plan_name".length);
  lines.push(`  ${"plan_name".padEnd(w)}  ${"orgs".padStart(9)}`);
  for (const [p, n] of plans) lines.push(`  ${`'${p}'`.padEnd(w)}  ${fmt(n).padStart(9)}${p === "" ? "  (no plan)" : ""}`);
  const pr = r.profiles;
  lines.push(
    `  trials: ${fmt(r.trials.active)} active, ${fmt(r.trials.expired)} expired; negative balances: ${r.negativeBalances}`,
    `  profiles: ${fmt(pr.user + pr.admin + pr.super_admin)} (user ${fmt(pr.user)}, admin ${fmt(pr.admin)}, super_admin ${fmt(pr.super_admin)}); orgs without a profile: ${fmt(r.orgsWithoutProfile)}`,
    `  consumption logs: ${fmt(r.logs.success + r.logs.failed)} (success ${fmt(r.logs.success)}, failed ${fmt(r.logs.failed)})`,
  );
  return lines;
}
