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
import * as pulumi from "@pulumi/pulumi";
import { connectClient, connectionChanged, recordConnection, tlsInputProblem } from "../lib/pgConnection";
import { ConnectionInputs, connectionProps } from "./connectionInputs";
import { walkPages, walkPlan } from "./pageWalk";

export interface BackfillArgs extends ConnectionInputs {
  /** sql/backfill/batch.sql, as text (shown in preview when it changes). */
  batchSql: pulumi.Input<string>;
  batchSqlSha256: pulumi.Input<string>;
  /** Organizations flipped per transaction (guardian:backfill.batchSize, default 1,000). */
  batchSize: pulumi.Input<number>;
  /** Pause between batches in ms (guardian:backfill.pauseMs). */
  pauseMs: pulumi.Input<number>;
  /** Hash of the plan catalogue and split the allocation uses. */
  rulesSha256: pulumi.Input<string>;
  /** The shares of the split rule (read by the policy pack). */
  split: pulumi.Input<Record<string, number>>;
  /** The backup this backfill stands on, and whether its restore was verified. */
  backupId: pulumi.Input<string>;
  restoreVerified: pulumi.Input<boolean>;
  requireVerifiedBackup: pulumi.Input<boolean>;
  /** Facts measured when the program ran: orgs still unified, in total and per allocation rule. */
  pendingOrgs: pulumi.Input<number>;
  orgsToMigrate: pulumi.Input<Record<string, number>>;
  /** The orgs of the split rule per stored plan name (trim + lower-case), so preview shows `pro: 170` to map. */
  splitPlanNames?: pulumi.Input<Record<string, number>>;
  lockTimeoutMs: pulumi.Input<number>;
}

const PROGRESS_EVERY_MS = 2000;

async function run(inputs: any): Promise<any> {
  if (inputs.requireVerifiedBackup && inputs.restoreVerified !== true) {
    throw new Error(`backfill refused: backup ${inputs.backupId} has no verified restore`);
  }
  const say = (s: string) => console.log(`backfill: ${s}`);
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const c = await connectClient(inputs.databaseUrl, inputs.tls, { application_name: "guardian-credits:backfill" });
  try {
    const verified = await c.query(`SELECT restore_verified FROM guardian.backups WHERE backup_id = $1`, [inputs.backupId]);
    if (inputs.requireVerifiedBackup && verified.rows[0]?.restore_verified !== true) {
      throw new Error(`backfill refused: guardian.backups does not record a verified restore for ${inputs.backupId}`);
    }
    const lockTimeoutMs = Math.floor(Number(inputs.lockTimeoutMs ?? 2000));
    if (!Number.isFinite(lockTimeoutMs) || lockTimeoutMs < 0) throw new Error(`backfill: lockTimeoutMs must be a non-negative number, got ${inputs.lockTimeoutMs}`);
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
      let r: any;
      for (let attempt = 0; ; attempt++) {
        try {
          // Three round trips per batch (open, flip, journal + commit): under load each one waits for a CPU.
          // A batch's commit does not wait for its WAL to reach disk (it competes with the applications' own
          // commits for WAL flushes). Nothing is at risk: the WAL is one sequence, so the next synchronous commit
          // (any application call that saw the flip, the verification) makes the batch durable with it, and a
          // batch lost in a server crash before that is simply still unified: the next run flips it.
          await c.query(`BEGIN; SET LOCAL lock_timeout = ${lockTimeoutMs}; SET LOCAL synchronous_commit = off`);
          r = (await c.query(inputs.batchSql, [from, to, inputs.batchSize])).rows[0];
          const flipped = Math.floor(Number(r.flipped));
          await c.query(flipped > 0
            ? `INSERT INTO guardian.migration_journal (step, object_name, details)
               VALUES ('backfill_batch', 'public.organization_credits', jsonb_build_object('flipped', ${flipped}, 'pass', ${pass})); COMMIT`
            : "COMMIT");
          break;
        } catch (e: any) {
          await c.query("ROLLBACK").catch(() => undefined);
          if (["55P03", "40P01", "40001"].includes(e?.code) && attempt < 20) {
            say(`batch at page ${from} waited too long for a lock (${e.code}); retry ${attempt + 1}`);
            await new Promise((res) => setTimeout(res, 50 * (attempt + 1)));
            continue;
          }
          throw e;
        }
      }
      if (r.flipped > 0) batches++;
      done += r.flipped;
      flippedThisPass += r.flipped;
      for (const [k, v] of Object.entries<number>(r.per_rule ?? {})) perRule[k] = (perRule[k] ?? 0) + v;
      clamped.push(...(r.clamped_orgs ?? []));
      const now = Date.now();
      if (now - lastReport >= PROGRESS_EVERY_MS) {
        lastReport = now;
        const rate = done / Math.max(0.001, (now - started) / 1000);
        const pct = total ? Math.min(100, Math.floor((100 * done) / total)) : 100;
        const eta = rate > 0 ? Math.max(0, (total - done) / rate) : 0;
        say(`${fmt(done)}/${fmt(total)} orgs (${pct}%), ${fmt(rate)} orgs/s, ETA ${eta.toFixed(0)} s`);
      }
      if (r.flipped > 0 && inputs.pauseMs > 0) await new Promise((res) => setTimeout(res, inputs.pauseMs));
      return { locked: Number(r.locked), tablePages: Number(r.table_pages) };
    };
    await walkPages(c, "unified", inputs.batchSize, plan, batch, (pass, left) => {
      say(`pass ${pass} flipped ${fmt(flippedThisPass)}; ${fmt(left)} still unified (written meanwhile), another pass`);
      flippedThisPass = 0;
    }, "backfill");
    const durationMs = Date.now() - started;
    const rate = done / Math.max(0.001, durationMs / 1000);
    say(`done: ${fmt(done)} orgs in ${batches} batches, ${(durationMs / 1000).toFixed(1)} s (${fmt(rate)} orgs/s)` +
      (clamped.length ? `; ${clamped.length} negative balance(s) counted as 0: ${clamped.slice(0, 5).join(", ")}` : ""));
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
  } finally {
    await c.end().catch(() => undefined);
  }
}

export const backfillProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: any, news: any) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!Number.isInteger(news.batchSize) || news.batchSize < 1) failures.push({ property: "batchSize", reason: `expected a positive integer, got ${news.batchSize}` });
    const tlsProblem = tlsInputProblem(news.tls);
    if (tlsProblem) failures.push({ property: "tls", reason: tlsProblem });
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: any, news: any) {
    const changes: string[] = [];
    if (Number(news.pendingOrgs) > 0) changes.push("pendingOrgs");
    if (olds.batchSqlSha256 !== news.batchSqlSha256) changes.push("batchSql");
    if (olds.rulesSha256 !== news.rulesSha256) changes.push("rulesSha256");
    if (olds.backupId !== news.backupId) changes.push("backupId");
    if (connectionChanged(olds, news)) changes.push("databaseUrl"); // a rotated secret or new TLS settings: recorded, nothing re-run
    return { changes: changes.length > 0, replaces: [], detailedDiff: Object.fromEntries(changes.map((k) => [k, { kind: "update", inputDiff: true }])) as any };
  },

  async create(inputs: any) {
    return { id: `backfill:${inputs.backupId}`, outs: await run(inputs) };
  },

  async update(_id: string, olds: any, news: any) {
    const onlyConnection = Number(news.pendingOrgs) === 0 && olds.batchSqlSha256 === news.batchSqlSha256 &&
      olds.rulesSha256 === news.rulesSha256 && olds.backupId === news.backupId;
    if (onlyConnection) return { outs: recordConnection(olds, news) };
    const outs = await run(news);
    // Keep the totals of the first run visible: a resumed or empty re-run adds to them.
    outs.rowsBackfilledTotal = Number(olds.rowsBackfilledTotal ?? olds.rowsBackfilled ?? 0) + outs.rowsBackfilled;
    return { outs };
  },

  async read(id: string, props: any) {
    const c = await connectClient(props.databaseUrl, props.tls, { application_name: "guardian-credits:backfill" });
    try {
      const n = Number((await c.query(`SELECT count(*)::bigint n FROM public.organization_credits WHERE credit_model = 'unified'`)).rows[0].n);
      return { id, props: { ...props, pendingOrgs: n } };
    } finally {
      await c.end().catch(() => undefined);
    }
  },

  async delete() {
    // Leaving the multi model is the Rollback resource's job (with reconciliation); nothing to undo here.
  },
};

/** Type token: pulumi-nodejs:dynamic/guardian:Backfill. */
export class BackfillRun extends pulumi.dynamic.Resource {
  declare readonly rowsBackfilled: pulumi.Output<number>;
  declare readonly orgsPerRule: pulumi.Output<Record<string, number>>;
  declare readonly negativeBalanceOrgs: pulumi.Output<string[]>;
  declare readonly durationMs: pulumi.Output<number>;
  declare readonly orgsPerSecond: pulumi.Output<number>;
  declare readonly finishedAt: pulumi.Output<string>;

  constructor(name: string, args: BackfillArgs, opts?: pulumi.CustomResourceOptions) {
    const { props, secretOutputs } = connectionProps(args);
    super(
      backfillProvider,
      name,
      {
        ...props,
        rowsBackfilled: undefined, orgsPerRule: undefined, negativeBalanceOrgs: undefined, durationMs: undefined,
        orgsPerSecond: undefined, finishedAt: undefined, batches: undefined,
      },
      { ...opts, additionalSecretOutputs: secretOutputs },
      "guardian",
      "Backfill",
    );
  }
}
