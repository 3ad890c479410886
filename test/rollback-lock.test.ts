/**
 * A rollback that cannot get its locks says what it waited for (issue 25, item 3: an operator met only "lock not
 * available (55P03), retry 1/10" and "canceling statement due to lock timeout"). A transaction of the application
 * holds an organization's credit row; the rollback's `up` (guardian:ddl with no retry, a short lock timeout) fails
 * naming the step and the table it waited for, v2 keeps serving, and once the lock is gone the next `up` completes
 * the rollback.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";

describe("a rollback that cannot lock the credit rows", () => {
  let m: Migrated;
  beforeAll(async () => {
    m = await seededStack(40, { ddl: { lockTimeoutMs: 300, retries: 0 } });
    await up(m.t);
    await m.t.setConfig({ creditModel: "unified" });
  });
  afterAll(() => teardown(m));

  it("fails naming the step and the table it waited for; v2 keeps serving; the next up completes", async () => {
    const holder = await m.db.client();
    let message = "";
    try {
      await holder.query("BEGIN");
      await holder.query(`SELECT 1 FROM public.organization_credits WHERE credit_model = 'multi' ORDER BY ctid LIMIT 1 FOR UPDATE`);
      try {
        await up(m.t);
      } catch (e) {
        message = String((e as Error).message) + m.t.logText();
      }
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      await holder.end();
    }
    // The first step that waits for it is dropping the allocation trigger (a table lock the row lock blocks); a batch
    // would name its heap pages ("locking the multi credit rows of public.organization_credits in heap pages [a, b)").
    expect(message).toMatch(
      /rollback: dropping the allocation trigger on public\.organization_credits: canceling statement due to lock timeout \(guardian:ddl retries exhausted\)/,
    );
    const [{ v2 }] = await m.db.query(`SELECT to_regprocedure('public.consume_credits_rpc(uuid,text,integer,text)') IS NOT NULL AS v2`);
    expect(v2).toBe(true);

    await up(m.t);
    const [{ multi }] = await m.db.query(`SELECT count(*)::int AS multi FROM public.organization_credits WHERE credit_model = 'multi'`);
    expect(multi).toBe(0);
  });
});
