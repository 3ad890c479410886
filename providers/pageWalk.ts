/**
 * The page walk the backfill and the rollback share: batches are ranges of heap pages of public.organization_credits,
 * walked in physical order (docs/architecture.md, "How the backfill walks the table"). This sizes a range from the
 * table's density when a pass starts: as many pages as hold about batchSize rows still in `model`.
 * Self-contained (the dynamic providers' closures are serialized with it): it takes a connected pg client.
 */
export async function walkPlan(
  c: { query: (sql: string) => Promise<{ rows: any[] }> },
  model: "unified" | "multi",
  batchSize: number,
): Promise<{ left: number; pagesPerBatch: number }> {
  const d = (await c.query(
    `SELECT pg_relation_size('public.organization_credits') / current_setting('block_size')::bigint AS pages,
            (SELECT count(*) FROM public.organization_credits WHERE credit_model = '${model === "multi" ? "multi" : "unified"}') AS n`)).rows[0];
  const pages = Math.max(1, Number(d.pages));
  const left = Number(d.n);
  const perPage = Math.max(1, left / pages);
  return { left, pagesPerBatch: Math.max(1, Math.floor(batchSize / perPage)) };
}
