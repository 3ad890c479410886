/**
 * Rollback by stack revert: creditModel back to unified, `pulumi up`. v1 comes back (body byte for byte, search_path
 * pinned), every balance is already what v1 should read (v2 kept it current), nothing is lost, the backup stays, and
 * migrating again gives back the pools as they were, minus what v1 served meanwhile: no refill.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_UNIFIED_COSTS, POOLS } from "../lib/config";
import { changed, type Migrated, orgs, type OrgRow, preview, seededStack, teardown, up } from "./helpers/migration";

describe("rollback to the unified model and migration again", () => {
  let m: Migrated;
  let original: OrgRow[];
  let v1Before: { def: string; md5: string };
  let firstUp: any;
  let rollbackUp: any;
  let logsBeforeRollback: number;
  const spent = new Map<string, number>(); // unified cost of every successful call made after the backup
  const spentSinceRollback = new Map<string, number>(); // ai credits v1 served after the rollback (ai_chat calls)

  let rollbackPreview: string;
  beforeAll(async () => {
    m = await seededStack(200);
    original = await orgs(m.db);
    [v1Before] = await m.db.query(`SELECT pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure) AS def,
                                         md5(pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure)) AS md5`);
    firstUp = await up(m.t);
    // Consumption in the multi model: mixed actions and quantities, some refused.
    const calls: [string, string, number][] = [];
    original.slice(0, 60).forEach((o, i) => {
      calls.push([o.organization_id, ["ai_chat", "email_send", "whatsapp_message", "form_generation", "sms_send"][i % 5], 1 + (i % 3)]);
      calls.push([o.organization_id, "ai_assistant", 2]);
    });
    for (const [org, action, qty] of calls) {
      const [{ r }] = await m.db.query(`SELECT public.consume_credits_rpc($1, $2, $3) AS r`, [org, action, qty]);
      if (r.success) spent.set(org, (spent.get(org) ?? 0) + DEFAULT_UNIFIED_COSTS[action] * qty);
    }
    expect(spent.size).toBeGreaterThan(30);
    [{ n: logsBeforeRollback }] = await m.db.query(`SELECT count(*)::int n FROM public.credit_consumption_logs`);
    await m.t.setConfig({ creditModel: "unified" });
    rollbackPreview = (await preview(m.t)).stdout;
    rollbackUp = await up(m.t);
  });
  afterAll(() => teardown(m));

  it("restores consume_credits_rpc v1 byte for byte, with a pinned search_path, as the only function of that name", async () => {
    const fns = await m.db.query(`SELECT oid::regprocedure::text AS sig, pg_get_functiondef(oid) AS def, proconfig FROM pg_proc
                                   WHERE proname = 'consume_credits_rpc' AND pronamespace = 'public'::regnamespace`);
    expect(fns.map((f) => f.sig)).toEqual(["consume_credits_rpc(uuid,text)"]);
    expect(fns[0].proconfig).toEqual(["search_path=public, pg_temp"]);
    // The same definition but for the one line the pin adds.
    expect(fns[0].def.replace(/\n SET search_path TO 'public', 'pg_temp'/, "")).toBe(v1Before.def);
    const [{ md5 }] = await m.db.query(`SELECT md5(pg_get_functiondef('public.consume_credits_rpc(uuid,text)'::regprocedure)) AS md5`);
    expect(rollbackUp.outputs.v1DefinitionMd5.value).toBe(md5);
    expect(rollbackUp.outputs.v1SearchPathPinned.value).toBe(true);
    const batch = await m.db.query(`SELECT to_regprocedure('public.consume_credits_batch(uuid,jsonb)') AS f`);
    expect(batch[0].f).toBeNull();
  });

  it("leaves every credits_remaining at its backup value minus the unified cost of each success since, floored at 0", async () => {
    const now = new Map((await orgs(m.db)).map((o) => [o.organization_id, o]));
    expect(rollbackUp.outputs.orgsSwitched.value).toBe(original.length);
    expect(rollbackUp.outputs.unifiedValuesChanged.value).toBe(0);
    for (const o of original) {
      // Untouched by the switch: an organization v2 never served keeps even a negative balance the application wrote.
      const want = spent.has(o.organization_id) ? Math.max(0, o.credits_remaining - spent.get(o.organization_id)!) : o.credits_remaining;
      const got = now.get(o.organization_id)!;
      expect(got.credits_remaining, `${o.organization_id} (${o.plan_name})`).toBe(want);
      expect(got.credit_model).toBe("unified");
    }
  });

  it("loses no consumption record and keeps the per-pool details queryable", async () => {
    const [{ n, pooled }] = await m.db.query(
      `SELECT count(*)::int n, count(*) FILTER (WHERE credit_model = 'multi')::int pooled FROM public.credit_consumption_logs`,
    );
    expect(n).toBe(logsBeforeRollback);
    expect(pooled).toBeGreaterThan(0);
    const [{ s }] = await m.db.query(`SELECT sum(ai_consumed + whatsapp_consumed + email_consumed + sms_consumed)::int s
                                        FROM public.credit_consumption_logs WHERE success AND credit_model = 'multi'`);
    expect(s).toBeGreaterThan(0);
  });

  it("keeps the backup", async () => {
    const id = firstUp.outputs.backupId.value;
    const [{ present }] = await m.db.query(`SELECT to_regnamespace($1) IS NOT NULL AS present`, [id]);
    expect(present).toBe(true);
    expect(rollbackUp.outputs.rollbackBackupId.value).toBe(id);
  });

  it("serves the unified model again through v1", async () => {
    const o = original.find((x) => x.credits_remaining > 50 && !spent.has(x.organization_id))!;
    const [{ r }] = await m.db.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [o.organization_id]);
    expect(r).toMatchObject({ success: true, credits_consumed: 1, remaining_credits: o.credits_remaining - 1 });
    spentSinceRollback.set(o.organization_id, 1);
  });

  it("its preview shows no change where none is made: the price list's SQL is the same in both models", () => {
    expect(rollbackPreview).toMatch(/~ pulumi-nodejs:dynamic\/guardian:Verification: \(update\)/); // the unified checks: a real change
    expect(rollbackPreview).not.toMatch(/\[id=catalogue:public\.credit_actions\]/);
    // Every `~ sql` that is shown has a line that differs.
    for (const block of rollbackPreview.split(/\n(?= {4}[~+-] pulumi)/)) {
      const m = /~ sql\s*:\s*\n((?:\s+[-+ ].*\n)+)/.exec(block);
      if (!m) continue;
      const minus = m[1]
        .split("\n")
        .filter((l) => /^\s+- /.test(l))
        .map((l) => l.replace(/^\s+- /, ""));
      const plus = m[1]
        .split("\n")
        .filter((l) => /^\s+\+ /.test(l))
        .map((l) => l.replace(/^\s+\+ /, ""));
      expect(minus.join("\n"), block.slice(0, 300)).not.toBe(plus.join("\n"));
    }
  });

  it("a second unified up changes nothing", async () => {
    const p = await preview(m.t);
    expect(changed(p.changeSummary)).toEqual({});
  });

  it("migrating again takes a new backup and gives back the pools as rolled back, minus what v1 served: no refill", async () => {
    const atRollback = new Map((await orgs(m.db)).map((o) => [o.organization_id, o]));
    // v1 serves one more call meanwhile: an ai_chat (1 ai credit once migrated again).
    const o = original.find((x) => spent.has(x.organization_id) && x.credits_remaining > 50)!;
    const [{ r }] = await m.db.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [o.organization_id]);
    expect(r.success).toBe(true);
    await m.t.setConfig({ creditModel: "multi" });
    const again = await up(m.t);
    expect(again.outputs.backupId.value).not.toBe(firstUp.outputs.backupId.value);
    expect(again.outputs.orgsMigrated.value).toBe(original.length);
    let refilled = 0;
    for (const x of await orgs(m.db)) {
      const before = atRollback.get(x.organization_id)!;
      expect(x.credit_model).toBe("multi");
      for (const pool of POOLS) {
        const v1Served = pool === "ai" ? (x.organization_id === o.organization_id ? 1 : 0) + (spentSinceRollback.get(x.organization_id) ?? 0) : 0;
        expect(x[`${pool}_credits_total`], `${x.organization_id} ${pool} total`).toBe(before[`${pool}_credits_total`]);
        expect(x[`${pool}_credits_available`], `${x.organization_id} ${pool}`).toBe(Math.max(0, before[`${pool}_credits_available`] - v1Served));
        if (x[`${pool}_credits_available`] > before[`${pool}_credits_available`]) refilled++;
      }
      // The switch back to multi changes no unified value either.
      expect(x.credits_remaining).toBe(before.credits_remaining - (x.organization_id === o.organization_id ? 1 : 0));
    }
    expect(refilled).toBe(0);
    // Consumed pools stay consumed: some organization had spent ai credits before the rollback.
    expect([...atRollback.values()].some((x) => x.ai_credits_available < x.ai_credits_total)).toBe(true);
  });
});
