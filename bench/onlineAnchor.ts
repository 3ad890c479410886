/**
 * The backfill's yardstick (issue 24, target 2): the online anchor. On a copy of a size's seeded database, with no
 * load, the Phase 3.5 rule (guardian.allocate_pools, the rule the backfill applies) flips every organization to the
 * multi model in transactions of 1,000 rows taken by primary key, each committed before the next. It is what an
 * operator would write by hand: no journal, no backup, no allocation records, no forward-again rule, no page walk,
 * no retries, nobody else calling. The backfill runs while consumers call; its rows per second are compared with
 * this one's, measured in the same run on the same rows.
 */
import { connect, inTransaction } from "../lib/db";
import { loadSql } from "../lib/sql";
import { createDatabase, dropDatabase, type PgServer } from "../operations/shared/pgserver";
import { fmt, log, secs } from "./common";
import { installCreditSchema } from "./rpc";

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
}

/**
 * Copies `seeded` (a database with no session open), installs the columns, the catalogue and the rule the backfill
 * needs, then times the flip alone. The copy is dropped at the end.
 */
export async function onlineAnchor(server: PgServer, seeded: string): Promise<AnchorResult> {
  const name = `${seeded}_anchor`;
  const url = await createDatabase(server, name, { template: seeded });
  try {
    const c = await connect(url);
    try {
      // The columns, constraints and catalogues (the log's index is not needed by the flip).
      await installCreditSchema(c, url, { logIndex: false });
      await inTransaction(c, () => c.query(loadSql("backfill/01_allocate_pools.sql").text));
      await c.query("ANALYZE public.organization_credits");
      await c.query("CHECKPOINT");

      log(`online anchor: the rule by primary key, ${ANCHOR_BATCH} rows per transaction, no load`);
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
          log(`online anchor: ${fmt(rows)} orgs`);
        }
      }
      const ms = Date.now() - t0;
      const result = { rows, batches, seconds: secs(ms), orgsPerSecond: Math.round(rows / (ms / 1000)) };
      log(`online anchor: ${fmt(rows)} orgs in ${result.seconds} s (${fmt(result.orgsPerSecond)} orgs/s)`);
      return result;
    } finally {
      await c.end();
    }
  } finally {
    await dropDatabase(server, name).catch(() => undefined);
  }
}
