/**
 * Verification states facts from the database and fails the update, naming the organizations, when an invariant is
 * violated. It is re-run here with `up --replace` on the verification resource after tampering with the data.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Migrated, orgs, seededStack, teardown, up } from "./helpers/migration";
import { collect } from "../harness/stack";

const VERIFY_URN = "urn:pulumi:test::guardian-credits::guardian:components:Verification$pulumi-nodejs:dynamic/guardian:Verification::verification-run";

describe("verification", () => {
  let m: Migrated;
  beforeAll(async () => {
    m = await seededStack(60);
    await up(m.t);
  });
  afterAll(() => teardown(m));

  const reverify = () => m.t.stack.up({ replace: [VERIFY_URN], onEvent: collect(m.t) });

  it("passes on an untouched migration and journals its run", async () => {
    const r = await reverify();
    expect(r.outputs.orgsMigrated.value).toBe(60);
    const [{ n }] = await m.db.query(`SELECT count(*)::int n FROM guardian.migration_journal WHERE step = 'verification'`);
    expect(n).toBe(2);
  });

  it("fails, naming the organization, when a pool balance no longer matches allocation minus consumption", async () => {
    const victim = (await orgs(m.db))[5].organization_id;
    await m.db.query(`UPDATE public.organization_credits SET ai_credits_available = ai_credits_available + 7 WHERE organization_id = $1`, [victim]);
    await expect(reverify()).rejects.toThrow(
      new RegExp(`verification of the multi model FAILED[\\s\\S]*available \\+ consumed since allocation differs from the allocation: 1 org\\(s\\): ${victim}`),
    );
    await m.db.query(`UPDATE public.organization_credits SET ai_credits_available = ai_credits_available - 7 WHERE organization_id = $1`, [victim]);
  });

  it("fails when a consumption is logged without its debit (a lost update)", async () => {
    const o = (await orgs(m.db)).find((x) => x.ai_credits_available > 0)!;
    await m.db.query(
      `INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success,
                                                   quantity, ai_consumed, credit_model, allocation_epoch)
       VALUES ($1, 'ai_chat', 1, $2, true, 1, 1, 'multi', $3)`,
      [o.organization_id, o.credits_remaining, o.allocation_epoch],
    );
    await expect(reverify()).rejects.toThrow(new RegExp(`1 org\\(s\\): ${o.organization_id}`));
  });

  it("an organization left in the unified model is migrated again by the next up, which then verifies", async () => {
    const o = (await orgs(m.db))[0];
    await m.db.query(`UPDATE public.organization_credits SET credit_model = 'unified' WHERE organization_id = $1`, [o.organization_id]);
    const r = await up(m.t); // the program sees 1 pending org: the backfill resumes, verification re-runs
    expect(r.outputs.orgsMigrated.value).toBe(60);
    const [after] = await m.db.query(`SELECT credit_model, allocation_epoch FROM public.organization_credits WHERE organization_id = $1`, [o.organization_id]);
    expect(after).toEqual({ credit_model: "multi", allocation_epoch: o.allocation_epoch + 1 });
  });
});
