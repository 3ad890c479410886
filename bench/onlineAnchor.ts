/**
 * The backfill's yardstick (issue 24, target 2): the online anchor. On a copy of a size's seeded database, with no
 * load, the Phase 3.5 rule (guardian.allocate_pools, the rule the backfill applies) flips every organization to the
 * multi model in transactions of 1,000 rows taken by primary key, each committed before the next. It is what an
 * operator would write by hand: no journal, no backup, no allocation records, no forward-again rule, no page walk,
 * no retries, nobody else calling. The backfill runs while consumers call; its rows per second are compared with
 * this one's, measured in the same run on the same rows.
 *
 * The same anchor runs a second time, on a second copy, while the same number of consumers call v2 back to back as
 * they do during the backfill (a reading, not a target): it splits the backfill's gap to the anchor into what the
 * load costs any flip and what the backfill's own work costs, and shows what the load's p99 does under a bare flip.
 */
import { CREDIT_FUNCTIONS } from "../components/creditFunctions";
import { ConsumerFleet, fleetOrgs, latencySummary } from "../harness/consumerFleet";
import { ensureBaseline } from "../lib/baseline";
import { connect, inTransaction } from "../lib/db";
import { loadSql } from "../lib/sql";
import { createDatabase, dropDatabase, type PgServer } from "../operations/shared/pgserver";
import { fmt, log, secs } from "./common";
import { installCreditSchema } from "./rpc";
import { WAL_COUNTERS_SQL, walCountersBetween, walCountersOf } from "./samplers";

export const ANCHOR_BATCH = 1000;

/** One batch: the next ANCHOR_BATCH organizations after $1 in primary-key order, allocated and flipped. */
const ANCHOR_BATCH_SQL = `
WITH b AS (
  SELECT c.organization_id, a.*
    FROM (SELECT organization_id, plan_name, total_credits, credits_remaining
            FROM public.organization_credits
           WHERE organization_id > $1 AND credit_model = 'unified'
           ORDER BY organization_id
           LIMIT ${ANCHOR_BATCH}) c,
         LATERAL guardian.allocate_pools(c.plan_name, c.total_credits, c.credits_remaining) a
), f AS (
  UPDATE public.organization_credits oc
     SET ai_credits_total = b.ai_total, ai_credits_available = b.ai_available,
         whatsapp_credits_total = b.whatsapp_total, whatsapp_credits_available = b.whatsapp_available,
         email_credits_total = b.email_total, email_credits_available = b.email_available,
         sms_credits_total = b.sms_total, sms_credits_available = b.sms_available,
         credit_model = 'multi', allocation_epoch = oc.allocation_epoch + 1, updated_at = now()
    FROM b
   WHERE oc.organization_id = b.organization_id
  RETURNING oc.organization_id
)
SELECT count(*)::int AS n, (SELECT organization_id FROM f ORDER BY organization_id DESC LIMIT 1) AS last FROM f`;

export interface AnchorResult {
  rows: number;
  batches: number;
  seconds: number;
  orgsPerSecond: number;
  /** The server's counters over the flip (cluster-wide; with consumers, their writes too), as the backfill's. */
  server: ReturnType<typeof walCountersBetween>;
}

/** The counters, after this session has added its own pending images to them (it does so when it next goes idle). */
async function walCounters(c: { query: (q: string) => Promise<{ rows: any[] }> }) {
  await c.query("SELECT pg_stat_force_next_flush()");
  return walCountersOf((await c.query(WAL_COUNTERS_SQL)).rows[0]);
}

/** The anchor while consumers call: its own figures, and the consumers' before and during it. */
export interface LoadedAnchorResult extends AnchorResult {
  consumers: number;
  idleBefore: ReturnType<typeof latencySummary>;
  duringFlip: ReturnType<typeof latencySummary>;
  failures: number;
}

/**
 * Copies `seeded` (a database with no session open), installs the columns, the catalogues and the rule the backfill
 * needs (with `consumers`, also the credit functions they call), then times the flip alone; with `consumers`, while
 * they call v2 back to back on every organization, after 3 s of calls without the flip. The copy is dropped at the end.
 */
export async function onlineAnchor(server: PgServer, seeded: string): Promise<AnchorResult>;
export async function onlineAnchor(server: PgServer, seeded: string, consumers: number): Promise<LoadedAnchorResult>;
export async function onlineAnchor(server: PgServer, seeded: string, consumers?: number): Promise<AnchorResult | LoadedAnchorResult> {
  const name = `${seeded}_anchor${consumers ? "_loaded" : ""}`;
  const what = consumers ? `while ${consumers} consumers call v2` : "no load";
  const url = await createDatabase(server, name, { template: seeded });
  let fleet: ConsumerFleet | undefined;
  try {
    const c = await connect(url);
    try {
      // The columns, constraints and catalogues (the log's index is not needed by the flip).
      if (consumers) await ensureBaseline(c);
      await installCreditSchema(c, url, { logIndex: false });
      await inTransaction(c, () => c.query(loadSql("backfill/01_allocate_pools.sql").text));
      if (consumers) for (const f of CREDIT_FUNCTIONS) await inTransaction(c, () => c.query(loadSql(f.file).text));
      await c.query("ANALYZE public.organization_credits");
      await c.query("CHECKPOINT");

      let idleFrom = 0;
      let idleTo = 0;
      if (consumers) {
        fleet = new ConsumerFleet({ url, orgs: await fleetOrgs(url), consumers, fourArgShare: 0, replayShare: 0, tag: "anchor" });
        await fleet.start();
        idleFrom = Date.now();
        await new Promise((r) => setTimeout(r, 3000));
        idleTo = Date.now();
      }
      log(`online anchor: the rule by primary key, ${ANCHOR_BATCH} rows per transaction, ${what}`);
      const before = await walCounters(c);
      const t0 = Date.now();
      let last = "00000000-0000-0000-0000-000000000000";
      let rows = 0;
      let batches = 0;
      let said = t0;
      for (;;) {
        const r = (await c.query<{ n: number; last: string | null }>(ANCHOR_BATCH_SQL, [last])).rows[0];
        if (r.n === 0 || r.last === null) break;
        rows += r.n;
        batches++;
        last = r.last;
        if (Date.now() - said > 10_000) {
          said = Date.now();
          log(`online anchor (${what}): ${fmt(rows)} orgs`);
        }
      }
      const t1 = Date.now();
      const after = await walCounters(c);
      const ms = t1 - t0;
      const server = walCountersBetween(before, after);
      const result = { rows, batches, seconds: secs(ms), orgsPerSecond: Math.round(rows / (ms / 1000)), server };
      log(`online anchor (${what}): ${fmt(rows)} orgs in ${result.seconds} s (${fmt(result.orgsPerSecond)} orgs/s)`);
      if (!fleet || !consumers) return result;
      const report = await fleet.stop();
      fleet = undefined;
      return {
        ...result,
        consumers,
        idleBefore: latencySummary(report.latencies, idleFrom, idleTo),
        duringFlip: latencySummary(report.latencies, t0, t1),
        failures: report.failureCount,
      };
    } finally {
      await c.end();
    }
  } finally {
    await fleet?.stop().catch(() => undefined);
    await dropDatabase(server, name).catch(() => undefined);
  }
}
