/**
 * A stack already multi from an earlier version (whose v2 did not take the unified cost from credits_remaining) gets
 * its unified columns brought current once, in the `up` that installs the debit that keeps them current (contract:
 * "The application around the credits keeps working"; sql/functions/02_bring_unified_current.sql). Then a rollback
 * has nothing to recompute, and switches back values that are current.
 *
 * The earlier version is played on a database this version migrated: consumption under v2, then what the earlier v2
 * would have left (credits_remaining at its backup value, no marker, the earlier debit's body), then `pulumi up` with a
 * refresh, as an operator deploying this version would.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect } from "../harness/stack";
import { type Migrated, seededStack, teardown, up } from "./helpers/migration";

describe("an already-multi stack from an earlier version", () => {
  let m: Migrated;
  let backupId: string;
  let first: any;
  let upgrade: any;
  const expected = new Map<string, number>();

  beforeAll(async () => {
    m = await seededStack(80);
    first = (await up(m.t)).outputs;
    backupId = first.backupId.value;
    // Consumption under multi, on a third of the organizations.
    const orgs = await m.db.query(
      `SELECT organization_id FROM public.organization_credits WHERE credit_model = 'multi' AND NOT (is_trial AND cycle_end_date < now()) ORDER BY 1`,
    );
    for (const [i, o] of orgs.entries()) {
      if (i % 3 !== 0) continue;
      for (const action of ["ai_chat", "email_send", "form_generation"])
        await m.db.query(`SELECT public.consume_credits_rpc($1, $2)`, [o.organization_id, action]);
    }
    // What this version would hold now, and what the rule brings an earlier version's database to: the same.
    for (const r of await m.db.query(
      `SELECT oc.organization_id, greatest(0, b.credits_remaining - coalesce((
                SELECT sum(l.credits_consumed) FROM public.credit_consumption_logs l
                 WHERE l.organization_id = oc.organization_id AND l.success
                   AND l.id > (SELECT coalesce(max(id), 0) FROM ${backupId}.credit_consumption_logs)), 0))::int AS want
         FROM public.organization_credits oc JOIN ${backupId}.organization_credits b USING (organization_id)`,
    ))
      expected.set(r.organization_id, r.want);
    // The earlier version's database: credits_remaining left at the backup value, no marker, the earlier debit.
    await m.db.query(`UPDATE public.organization_credits oc SET credits_remaining = b.credits_remaining
                        FROM ${backupId}.organization_credits b WHERE b.organization_id = oc.organization_id`);
    await m.db.query(`DELETE FROM guardian.unified_columns_current`);
    const [{ def }] = await m.db.query(
      `SELECT pg_get_functiondef('guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)'::regprocedure) AS def`,
    );
    await m.db.query(def.replace(/\$function\$\s*$/, "").replace(/AS \$function\$/, "AS $function$\n-- an earlier version's debit\n") + "$function$");
    upgrade = (await m.t.stack.up({ onEvent: collect(m.t), refresh: true })).outputs;
  });
  afterAll(() => teardown(m));

  it("the up that installs this debit brings every multi organization's credits_remaining current, once", async () => {
    const now = await m.db.query(`SELECT organization_id, credits_remaining, credit_model FROM public.organization_credits`);
    const differ = now.filter((r) => r.credits_remaining !== expected.get(r.organization_id));
    expect(differ).toEqual([]);
    const [marker] = await m.db.query(`SELECT backup_id, orgs_brought_current::int AS n FROM guardian.unified_columns_current`);
    expect(marker.backup_id).toBe(backupId);
    expect(marker.n).toBeGreaterThan(20); // the organizations that consumed
    expect(upgrade.backupId.value).toBe(backupId); // no new backup: the one the migration took is the base
  });

  it("a first migration only records since when: nothing to bring current", () => {
    expect(first.verification.value.unifiedColumnsCurrent).toMatchObject({ fromBackup: null, orgsBroughtCurrent: 0 });
  });

  it("a later up brings nothing current again: v2 keeps the column from here on", async () => {
    const [o] = await m.db.query(
      `SELECT organization_id, credits_remaining FROM public.organization_credits WHERE credit_model = 'multi' AND credits_remaining > 5 ORDER BY 1 LIMIT 1`,
    );
    await m.db.query(`SELECT public.consume_credits_rpc($1, 'ai_chat')`, [o.organization_id]);
    await up(m.t);
    const [{ credits_remaining }] = await m.db.query(`SELECT credits_remaining FROM public.organization_credits WHERE organization_id = $1`, [
      o.organization_id,
    ]);
    expect(credits_remaining).toBe(o.credits_remaining - 1);
    const [{ n }] = await m.db.query(`SELECT count(*)::int AS n FROM guardian.unified_columns_current`);
    expect(n).toBe(1);
  });

  it("the rollback then switches back values that are current, and changes none", async () => {
    const before = new Map(
      (await m.db.query(`SELECT organization_id, credits_remaining FROM public.organization_credits`)).map((r) => [r.organization_id, r.credits_remaining]),
    );
    await m.t.setConfig({ creditModel: "unified" });
    const rb = (await up(m.t)).outputs;
    expect(rb.unifiedValuesChanged.value).toBe(0);
    for (const r of await m.db.query(`SELECT organization_id, credits_remaining FROM public.organization_credits`))
      expect(r.credits_remaining, r.organization_id).toBe(before.get(r.organization_id));
  });
});
