/**
 * The walks over public.organization_credits (docs/architecture.md, "How the backfill walks the table"):
 *   walkPages  the rollback's: batches are ranges of heap pages, walked in physical order;
 *   walkKeys   the backfill's: batches follow organization_id (a keyset walk), since each flip writes index entries
 *              in that order (sql/backfill/batch.sql says what was measured).
 * Both walk in passes and count what is left after each one. Self-contained (the dynamic providers' closures are
 * serialized with it): it takes a connected pg client.
 */
import type { CreditModel } from "../lib/config";
import type { Db } from "./kernel";
type Model = CreditModel;

/** The size of public.organization_credits in heap pages, as SQL. */
const TABLE_PAGES_SQL = "pg_relation_size('public.organization_credits') / current_setting('block_size')::bigint";

/** Rows still in `model`, the table's size in pages now, and how many pages hold about batchSize of those rows (from
 *  the table's density now). */
export async function walkPlan(c: Db, model: Model, batchSize: number): Promise<WalkPlan> {
  const d = (
    await c.query<{ pages: string; n: string }>(
      `SELECT ${TABLE_PAGES_SQL} AS pages,
            (SELECT count(*) FROM public.organization_credits WHERE credit_model = '${model === "multi" ? "multi" : "unified"}') AS n`,
    )
  ).rows[0];
  const pages = Math.max(1, Number(d.pages));
  const left = Number(d.n);
  const perPage = Math.max(1, left / pages);
  return { left, pages, pagesPerBatch: Math.max(1, Math.floor(batchSize / perPage)) };
}

/** Passes before the walk gives up (a pass that keeps finding rows moved behind it means something keeps moving them). */
const MAX_PASSES = 8;

export interface WalkPlan {
  left: number;
  pages: number;
  pagesPerBatch: number;
}

/**
 * Walks the table in passes until no row is left in `model`, starting from `plan` (walkPlan's answer). `batch` handles
 * at most batchSize rows of pages [from, to) and says how many it locked.
 *   - A full batch may have left rows in its range: the range runs again.
 *   - A pass walks the pages the table had when the pass began. The table grows while the walk goes (a flip writes a
 *     new row version, usually at the end), and those pages hold the walk's own work: walking on into them cost the
 *     1M-org backfill 1,561 transactions that flipped nothing, besides its 1,063 that did (bench/results,
 *     2026-12-06.backfill-anchor.md).
 *   - A pass ends with a count. Rows a concurrent call moved behind the walk, or past the pass's last page, get another
 *     pass (passEnded is told), sized from the density then: a few rows over the whole table make a few large ranges.
 *     At most MAX_PASSES passes.
 */
export async function walkPages(
  c: Db,
  model: Model,
  batchSize: number,
  plan: WalkPlan,
  batch: (from: number, to: number, pass: number) => Promise<{ locked: number }>,
  passEnded: (pass: number, left: number) => void,
  label: string,
): Promise<void> {
  for (let pass = 1; plan.left > 0; pass++) {
    if (pass > MAX_PASSES) throw new Error(`${label}: ${plan.left} organizations are still ${model} after ${MAX_PASSES} passes`);
    let page = 0;
    while (page < plan.pages) {
      const b = await batch(page, page + plan.pagesPerBatch, pass);
      if (b.locked < batchSize) page += plan.pagesPerBatch;
    }
    plan = await walkPlan(c, model, batchSize);
    if (plan.left > 0) passEnded(pass, plan.left);
  }
}

/** The organization_id before every other: where a keyset walk starts. */
export const FIRST_KEY = "00000000-0000-0000-0000-000000000000";

/**
 * Walks the table in passes until no row is left in `model`. Each pass walks organization_id from FIRST_KEY: `batch`
 * handles at most its batch of rows after `after` and says how many it locked and the last one; the pass ends at a
 * batch that locked nothing. A row moved behind the walk meanwhile (none should be: new rows are the allocation
 * trigger's) gets another pass (passEnded is told). At most MAX_PASSES passes. `left` is how many were in `model`
 * when the walk began.
 */
export async function walkKeys(
  c: Db,
  model: Model,
  left: number,
  batch: (after: string, pass: number) => Promise<{ locked: number; last: string | null }>,
  passEnded: (pass: number, left: number) => void,
  label: string,
): Promise<void> {
  for (let pass = 1; left > 0; pass++) {
    if (pass > MAX_PASSES) throw new Error(`${label}: ${left} organizations are still ${model} after ${MAX_PASSES} passes`);
    for (let after = FIRST_KEY; ; ) {
      const b = await batch(after, pass);
      if (b.locked === 0 || b.last === null) break;
      after = b.last;
    }
    left = (await walkPlan(c, model, 1)).left;
    if (left > 0) passEnded(pass, left);
  }
}
