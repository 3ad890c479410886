/**
 * An index build interrupted earlier (a deadlock or lock timeout on CREATE INDEX CONCURRENTLY, or a crashed run) leaves
 * an INVALID index of its name behind. `IF NOT EXISTS` would skip it, and the planner never uses it. The next `up`
 * drops it (concurrently) and builds the index again, saying so, through the real engine on a real Postgres.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";

const INDEX = "credit_consumption_logs_org_epoch_success_idx";

describe("an INVALID index left by an interrupted build", () => {
  let m: Migrated;
  let result: any;

  beforeAll(async () => {
    m = await seededStack(50);
    // A UNIQUE build over duplicate organization ids fails half-way, as an interrupted build does: INVALID index left.
    await m.db.query(`CREATE UNIQUE INDEX CONCURRENTLY ${INDEX} ON public.credit_consumption_logs (organization_id)`).catch(() => undefined);
    const [left] = await m.db.query(`SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.${INDEX}')`);
    expect(left).toEqual({ indisvalid: false });
    result = await up(m.t);
  }, 600_000);
  afterAll(() => teardown(m));

  it("is dropped and built again by the next up, which says so", async () => {
    expect(result.summary.result).toBe("succeeded");
    const [ix] = await m.db.query(`SELECT i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) AS def
                                     FROM pg_index i WHERE i.indexrelid = to_regclass('public.${INDEX}')`);
    expect(ix).toEqual({
      indisvalid: true,
      indisunique: false,
      def: `CREATE INDEX ${INDEX} ON public.credit_consumption_logs USING btree (organization_id, allocation_epoch) WHERE success`,
    });
    const said = m.t.events.map((e: any) => e.diagnosticEvent?.message ?? "").join("");
    expect(said).toContain(`index public.${INDEX}: dropping the INVALID index an interrupted build left, then building it again`);
  });
});
