/**
 * The page walk the backfill and the rollback share: batches are ranges of heap pages of public.organization_credits,
 * walked in physical order (docs/architecture.md, "How the backfill walks the table").
 * Self-contained (the dynamic providers' closures are serialized with it): it takes a connected pg client.
 */
import type { CreditModel } from "../lib/config";
import type { Db } from "./kernel";
type Model = CreditModel;

/** The size of public.organization_credits in heap pages, as SQL. */
export const TABLE_PAGES_SQL = "pg_relation_size('public.organization_credits') / current_setting('block_size')::bigint";

/** Rows still in `model`, and how many pages hold about batchSize of them (from the table's density now). */
export async function walkPlan(c: Db, model: Model, batchSize: number): Promise<{ left: number; pagesPerBatch: number }> {
  const d = (
    await c.query<{ pages: string; n: string }>(
      `SELECT ${TABLE_PAGES_SQL} AS pages,
            (SELECT count(*) FROM public.organization_credits WHERE credit_model = '${model === "multi" ? "multi" : "unified"}') AS n`,
    )
  ).rows[0];
  const pages = Math.max(1, Number(d.pages));
  const left = Number(d.n);
  const perPage = Math.max(1, left / pages);
  return { left, pagesPerBatch: Math.max(1, Math.floor(batchSize / perPage)) };
}

/**
 * Walks the table in passes until no row is left in `model`, starting from `plan` (walkPlan's answer). `batch` handles
 * at most batchSize rows of pages [from, to) and says how many it locked and the table's size in pages after it.
 *   - A full batch may have left rows in its range: the range runs again.
 *   - The table grows while the walk goes (an update writes a new row version, often at the end): the walk goes on to
 *     the end as it is after each batch, so rows a concurrent call moved ahead of it are handled too.
 *   - A pass ends with a count; rows moved behind the walk get another pass (passEnded is told), at most 5 passes.
 */
export async function walkPages(
  c: Db,
  model: Model,
  batchSize: number,
  plan: { left: number; pagesPerBatch: number },
  batch: (from: number, to: number, pass: number) => Promise<{ locked: number; tablePages: number }>,
  passEnded: (pass: number, left: number) => void,
  label: string,
): Promise<void> {
  for (let pass = 1; plan.left > 0; pass++) {
    if (pass > 5) throw new Error(`${label}: ${plan.left} organizations are still ${model} after 5 passes`);
    let page = 0;
    let tablePages = 1;
    while (page < tablePages) {
      const b = await batch(page, page + plan.pagesPerBatch, pass);
      if (b.locked < batchSize) page += plan.pagesPerBatch;
      tablePages = b.tablePages;
    }
    plan = await walkPlan(c, model, batchSize);
    if (plan.left > 0) passEnded(pass, plan.left);
  }
}
