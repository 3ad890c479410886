/**
 * Backfill: flips every organization from the unified to the multi model, in batches, online.
 *
 *   check   refuses to run without a verified backup when requireVerifiedBackup is set, and checks the batch size.
 *   create  runs sql/backfill/batch.sql repeatedly (a walk over the table's heap pages, one short transaction per batch, lock
 *           waits bounded and retried), printing progress; then passes again until no unified org is left (rows
 *           written while it ran are handled by the allocation trigger, which exists before the first batch).
 *           Resumable: it works off credit_model, so after a crash the next run continues where the last stopped.
 *           Idempotent: a re-run over migrated orgs changes nothing.
 *   read    counts the orgs still unified (pendingOrgs).
 *   diff    an update while orgs are still unified (preview states how many, per plan); otherwise nothing, so a second
 *           `pulumi up` changes nothing. A change of allocation rules is recorded without re-allocating anyone: the
 *           new rules apply to allocations made from then on (new orgs, plan changes), never retroactively.
 *   update  the same as create (resume).
 *   delete  nothing: leaving the multi model is the Rollback resource's job, with reconciliation.
 */
import type * as pulumi from "@pulumi/pulumi";
import {
  connectionChanged,
  connectionFailures,
  connectedResource,
  recorded,
  type RecordedBy,
  diffOf,
  journalSql,
  lockPolicy,
  type Provider,
  recordConnection,
  type ResourceArgs,
  retriedTransaction,
  withConnection,
} from "./kernel";
import type { Connection } from "./kernel";
import { walkPages, walkPlan } from "./pageWalk";

export interface BackfillInputs extends Connection {
  /** sql/backfill/batch.sql, as text (shown in preview when it changes). */
  batchSql: string;
  batchSqlSha256: string;
  /** Organizations flipped per transaction (guardian:backfill.batchSize, default 1,000). */
  batchSize: number;
  /** Pause between batches in ms (guardian:backfill.pauseMs). */
  pauseMs: number;
  /** Hash of the plan catalogue and split the allocation uses. */
  rulesSha256: string;
  /** The shares of the split rule (read by the policy pack). */
  split: Record<string, number>;
  /** The backup this backfill stands on, and whether its restore was verified. */
  backupId: string;
  restoreVerified: boolean;
  requireVerifiedBackup: boolean;
  /** Facts measured when the program ran: orgs still unified, in total and per allocation rule. */
  pendingOrgs: number;
  orgsToMigrate: Record<string, number>;
  /** The orgs of the split rule per stored plan name (trim + lower-case), so preview shows `pro: 170` to map. */
  splitPlanNames?: Record<string, number>;
  /** guardian:ddl: each batch's lock timeout, and how many times a batch is retried on a lock conflict (default 10). */
  lockTimeoutMs: number;
  retries?: number;
}

/** What the backfill run records beyond its inputs: the resource's outputs, declared once. */
export const BACKFILL_OUTPUTS = {
  rowsBackfilled: recorded<number>(),
  orgsPerRule: recorded<Record<string, number>>(),
  batches: recorded<number>(),
  durationMs: recorded<number>(),
  orgsPerSecond: recorded<number>(),
  negativeBalanceOrgs: recorded<string[]>(),
  finishedAt: recorded<string>(),
};

export type BackfillOutputs = BackfillInputs &
  RecordedBy<typeof BACKFILL_OUTPUTS> & {
    /** rowsBackfilled of the first run plus every resumed run's. */
    rowsBackfilledTotal?: number;
  };

export type BackfillArgs = ResourceArgs<BackfillInputs>;

const PROGRESS_EVERY_MS = 2000;
const APP = "backfill";

/** One row of sql/backfill/batch.sql. */
interface BatchRow {
  flipped: number | string;
  locked: number | string;
  per_rule: Record<string, number> | null;
  clamped_orgs: string[] | null;
}

async function run(inputs: BackfillInputs): Promise<BackfillOutputs> {
  if (inputs.requireVerifiedBackup && inputs.restoreVerified !== true) {
    throw new Error(`backfill refused: backup ${inputs.backupId} has no verified restore`);
  }
  const say = (s: string) => console.log(`backfill: ${s}`);
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  return withConnection(inputs, APP, async (c) => {
    const verified = await c.query<{ restore_verified: boolean | null }>(`SELECT restore_verified FROM guardian.backups WHERE backup_id = $1`, [
      inputs.backupId,
    ]);
    if (inputs.requireVerifiedBackup && verified.rows[0]?.restore_verified !== true) {
      throw new Error(`backfill refused: guardian.backups does not record a verified restore for ${inputs.backupId}`);
    }
    lockPolicy(inputs, "backfill"); // refuses a bad lockTimeoutMs or retries before the first batch
    // Batches are ranges of heap pages (sql/backfill/batch.sql, providers/pageWalk.ts): as many pages as hold about
    // batchSize unified organizations; never more than batchSize organizations.
    const plan = await walkPlan(c, "unified", inputs.batchSize);
    const total = plan.left;
    const started = Date.now();
    let done = 0;
    let batches = 0;
    const perRule: Record<string, number> = {};
    const clamped: string[] = [];
    let lastReport = 0;
    let flippedThisPass = 0;
    say(`${fmt(total)} organizations to migrate, at most ${fmt(inputs.batchSize)} per batch`);
    const batch = async (from: number, to: number, pass: number) => {
      // Three round trips per batch (open, flip, journal + commit): under load each one waits for a CPU.
      // A batch's commit does not wait for its WAL to reach disk (it competes with the applications' own
      // commits for WAL flushes). Nothing is at risk: the WAL is one sequence, so the next synchronous commit
      // (any application call that saw the flip, the verification) makes the batch durable with it, and a
      // batch lost in a server crash before that is simply still unified: the next run flips it.
      const r = await retriedTransaction(c, inputs, `backfill: batch at page ${from}`, { settings: { synchronous_commit: "off" } }, async (tx) => {
        const row = (await c.query<BatchRow>(inputs.batchSql, [from, to, inputs.batchSize])).rows[0];
        const flipped = Math.floor(Number(row.flipped));
        if (flipped > 0) tx.atCommit(journalSql({ step: "backfill_batch", objectName: "public.organization_credits", details: { flipped, pass } }));
        return row;
      });
      const flipped = Number(r.flipped);
      if (flipped > 0) batches++;
      done += flipped;
      flippedThisPass += flipped;
      for (const [k, v] of Object.entries(r.per_rule ?? {})) perRule[k] = (perRule[k] ?? 0) + v;
      clamped.push(...(r.clamped_orgs ?? []));
      const now = Date.now();
      if (now - lastReport >= PROGRESS_EVERY_MS) {
        lastReport = now;
        const rate = done / Math.max(0.001, (now - started) / 1000);
        const pct = total ? Math.min(100, Math.floor((100 * done) / total)) : 100;
        const eta = rate > 0 ? Math.max(0, (total - done) / rate) : 0;
        say(`${fmt(done)}/${fmt(total)} orgs (${pct}%), ${fmt(rate)} orgs/s, ETA ${eta.toFixed(0)} s`);
      }
      if (flipped > 0 && inputs.pauseMs > 0) await new Promise((res) => setTimeout(res, inputs.pauseMs));
      return { locked: Number(r.locked) };
    };
    await walkPages(
      c,
      "unified",
      inputs.batchSize,
      plan,
      batch,
      (pass, left) => {
        say(`pass ${pass} flipped ${fmt(flippedThisPass)}; ${fmt(left)} still unified (written meanwhile), another pass`);
        flippedThisPass = 0;
      },
      "backfill",
    );
    const durationMs = Date.now() - started;
    const rate = done / Math.max(0.001, durationMs / 1000);
    say(
      `done: ${fmt(done)} orgs in ${batches} batches, ${(durationMs / 1000).toFixed(1)} s (${fmt(rate)} orgs/s)` +
        (clamped.length ? `; ${clamped.length} negative balance(s) counted as 0: ${clamped.slice(0, 5).join(", ")}` : ""),
    );
    return {
      ...inputs,
      rowsBackfilled: done,
      orgsPerRule: perRule,
      batches,
      durationMs,
      orgsPerSecond: Math.round(rate),
      negativeBalanceOrgs: clamped,
      pendingOrgs: 0,
      orgsToMigrate: {},
      finishedAt: new Date().toISOString(),
    };
  });
}

export const backfillProvider: Provider<BackfillInputs, BackfillOutputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!Number.isInteger(news.batchSize) || news.batchSize < 1)
      failures.push({ property: "batchSize", reason: `expected a positive integer, got ${news.batchSize}` });
    failures.push(...connectionFailures(news));
    return { inputs: news, failures };
  },

  async diff(_id, olds, news) {
    // guardian:ddl (lockTimeoutMs, retries) is not compared: it says how a run waits, and applies from the next run.
    const changed: string[] = [];
    if (Number(news.pendingOrgs) > 0) changed.push("pendingOrgs");
    if (olds.batchSqlSha256 !== news.batchSqlSha256) changed.push("batchSql");
    if (olds.rulesSha256 !== news.rulesSha256) changed.push("rulesSha256");
    if (olds.backupId !== news.backupId) changed.push("backupId");
    if (connectionChanged(olds, news)) changed.push("databaseUrl"); // a rotated secret or new TLS settings: recorded, nothing re-run
    return diffOf(changed);
  },

  async create(inputs) {
    return { id: `backfill:${inputs.backupId}`, outs: await run(inputs) };
  },

  async update(_id, olds, news) {
    const onlyConnection =
      Number(news.pendingOrgs) === 0 && olds.batchSqlSha256 === news.batchSqlSha256 && olds.rulesSha256 === news.rulesSha256 && olds.backupId === news.backupId;
    if (onlyConnection) return { outs: recordConnection(olds, news) };
    const outs = await run(news);
    // Keep the totals of the first run visible: a resumed or empty re-run adds to them.
    outs.rowsBackfilledTotal = Number(olds.rowsBackfilledTotal ?? olds.rowsBackfilled ?? 0) + outs.rowsBackfilled;
    return { outs };
  },

  async read(id, props) {
    return withConnection(props, APP, async (c) => {
      const n = Number((await c.query<{ n: string }>(`SELECT count(*)::bigint n FROM public.organization_credits WHERE credit_model = 'unified'`)).rows[0].n);
      return { id, props: { ...props, pendingOrgs: n } };
    });
  },

  async delete() {
    // Leaving the multi model is the Rollback resource's job (with reconciliation); nothing to undo here.
  },
};

/** Type token: pulumi-nodejs:dynamic/guardian:Backfill. */
export const BackfillRun = connectedResource<BackfillInputs, typeof BACKFILL_OUTPUTS, BackfillArgs>(backfillProvider, "Backfill", BACKFILL_OUTPUTS);
export type BackfillRun = InstanceType<typeof BackfillRun>;
