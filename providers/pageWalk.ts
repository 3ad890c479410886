/**
 * The page walk the backfill and the rollback share: batches are ranges of heap pages of public.organization_credits,
 * walked in physical order (docs/architecture.md, "How the backfill walks the table").
 * Self-contained (the dynamic providers' closures are serialized with it): it takes a connected pg client.
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
