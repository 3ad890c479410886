/**
 * Margin views on real Postgres (sql/margins/01_plan_margins.sql): public.plan_margins agrees with lib/margins.ts for
 * the default catalogue, with every pool counted; public.action_margins gives the actual per-API margin from the log.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MARGINS_FILE, MARGINS_PROBE } from "../components/margins";
import { parseConfig } from "../lib/config";
import { rolledBack } from "../lib/db";
import { planMargins } from "../lib/margins";
import { asUser, type TestDb } from "./helpers/db";
import { applySqlFiles, errorOf, guardianDb, insertLog, makeOrg, writeCatalogue } from "./helpers/auditFixture";

const config = parseConfig({ databaseUrl: "postgres://u@localhost/db" });

describe("public.plan_margins and public.action_margins", () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await guardianDb("gm");
    await writeCatalogue(db, config);
    await applySqlFiles(db, [MARGINS_FILE]);
  });
  afterAll(() => db?.drop());

  it("has exactly the contract's columns: plan_name, price_eur, cost_eur, margin_pct", async () => {
    const cols = await db.query(`SELECT attname FROM pg_attribute WHERE attrelid = 'public.plan_margins'::regclass AND attnum > 0 ORDER BY attnum`);
    expect(cols.map((c) => c.attname)).toEqual(["plan_name", "price_eur", "cost_eur", "margin_pct"]);
  });

  it("computes in SQL the same margins as lib/margins.ts for the default catalogue, every pool counted", async () => {
    const rows = await db.query(`SELECT plan_name, price_eur::float8 AS price, cost_eur::float8 AS cost, margin_pct::float8 AS pct FROM public.plan_margins`);
    const byName = Object.fromEntries(rows.map((r) => [r.plan_name, r]));
    const expected = planMargins(config);
    expect(Object.keys(byName).sort()).toEqual(expected.map((m) => m.plan).sort());
    for (const m of expected) {
      expect({ plan: m.plan, price: byName[m.plan].price, cost: byName[m.plan].cost, pct: byName[m.plan].pct }).toEqual({
        plan: m.plan,
        price: m.priceEur,
        cost: m.costEur,
        pct: m.marginPct,
      });
    }
    expect(byName.starter).toMatchObject({ cost: 5.855, pct: 69.18 });
    expect(byName.premium).toMatchObject({ cost: 51.34, pct: 65.54 });
    expect(byName.enterprise.pct).toBeNull();
    expect(byName.trial_14.pct).toBeNull();
  });

  it("shows an unknown cost, not a better margin, when a pool's unit cost is missing", async () => {
    const c = await db.client();
    try {
      const [r] = await rolledBack(c, async () => {
        await c.query("DELETE FROM guardian.provider_costs WHERE pool = 'sms'");
        return (await c.query(`SELECT cost_eur, margin_pct FROM public.plan_margins WHERE plan_name = 'starter'`)).rows;
      });
      expect(r).toEqual({ cost_eur: null, margin_pct: null });
    } finally {
      await c.end();
    }
  });

  it("gives the per-API actual margin from multi-served successes, revenue at price / plan allocation per credit", async () => {
    const starter = await makeOrg(db, { plan: " Starter ", creditModel: "multi", epoch: 1 });
    const custom = await makeOrg(db, { plan: "custom", creditModel: "multi", epoch: 1 });
    await insertLog(db, { organizationId: starter, actionType: "ai_chat", quantity: 10, ai: 10 });
    await insertLog(db, { organizationId: starter, actionType: "sms_send", quantity: 4, sms: 4 });
    await insertLog(db, { organizationId: starter, actionType: "whatsapp_message", quantity: 3, whatsapp: 3 });
    await insertLog(db, { organizationId: custom, actionType: "sms_send", quantity: 2, sms: 2 });
    // Not counted: a refused attempt, a unified-served success, a pre-Phase-3.5 row.
    await insertLog(db, { organizationId: starter, actionType: "sms_send", success: false, errorCode: "INSUFFICIENT_CREDITS" });
    await insertLog(db, { organizationId: starter, actionType: "sms_send", creditModel: "unified", sms: 0 });
    await insertLog(db, { organizationId: starter, actionType: "ai_chat", creditModel: null, epoch: null });

    const rows = await db.query(
      `SELECT action_type, calls::int, quantity::int, ai_consumed::int, whatsapp_consumed::int, email_consumed::int, sms_consumed::int,
              cost_eur::float8, priced_cost_eur::float8, revenue_eur::float8, margin_pct::float8, unpriced_calls::int, unpriced_cost_eur::float8
         FROM public.action_margins ORDER BY action_type`,
    );
    const perCredit = 19 / (200 + 150 + 1000 + 50); // starter: EUR 19 for 1,400 credits
    const r6 = (x: number) => Math.round(x * 1e6) / 1e6;
    const r2 = (x: number) => Math.round(x * 100) / 100;
    expect(rows).toEqual([
      {
        action_type: "ai_chat",
        calls: 1,
        quantity: 10,
        ai_consumed: 10,
        whatsapp_consumed: 0,
        email_consumed: 0,
        sms_consumed: 0,
        cost_eur: 0.05,
        priced_cost_eur: 0.05,
        revenue_eur: r6(10 * perCredit),
        margin_pct: r2((100 * (10 * perCredit - 0.05)) / (10 * perCredit)),
        unpriced_calls: 0,
        unpriced_cost_eur: 0,
      },
      {
        action_type: "sms_send",
        calls: 2,
        quantity: 6,
        ai_consumed: 0,
        whatsapp_consumed: 0,
        email_consumed: 0,
        sms_consumed: 6,
        cost_eur: 0.3,
        priced_cost_eur: 0.2,
        revenue_eur: r6(4 * perCredit),
        margin_pct: r2((100 * (4 * perCredit - 0.2)) / (4 * perCredit)),
        unpriced_calls: 1,
        unpriced_cost_eur: 0.1,
      },
      {
        action_type: "whatsapp_message",
        calls: 1,
        quantity: 3,
        ai_consumed: 0,
        whatsapp_consumed: 3,
        email_consumed: 0,
        sms_consumed: 0,
        cost_eur: 0.0471,
        priced_cost_eur: 0.0471,
        revenue_eur: r6(3 * perCredit),
        margin_pct: r2((100 * (3 * perCredit - 0.0471)) / (3 * perCredit)),
        unpriced_calls: 0,
        unpriced_cost_eur: 0,
      },
    ]);
    // The point of the view: an SMS sold at the average credit price loses money.
    expect(rows[1].margin_pct).toBe(-268.42);
    expect(rows[0].margin_pct).toBe(63.16);
  });

  it("is readable by service_role only: authenticated and anon are refused", async () => {
    const n = await asUser(db, { role: "service_role" }, (c) => c.query("SELECT count(*)::int n FROM public.plan_margins")).then((r) => r.rows[0].n);
    expect(n).toBe(6);
    await asUser(db, { role: "service_role" }, (c) => c.query("SELECT * FROM public.action_margins"));
    for (const role of ["authenticated", "anon"] as const) {
      for (const view of ["plan_margins", "action_margins"]) {
        const e = await errorOf(
          asUser(db, { role, sub: role === "authenticated" ? "7d9f3c1e-2b4a-4c8e-9f10-a1b2c3d4e5f6" : undefined }, (c) =>
            c.query(`SELECT * FROM public.${view}`),
          ),
        );
        expect(e.message).toBe(`permission denied for view ${view}`);
      }
    }
  });

  it("is security_invoker, and its probe finds both views; applying the file again changes nothing", async () => {
    const opts = await db.query(`SELECT relname, reloptions FROM pg_class WHERE relname IN ('plan_margins', 'action_margins') ORDER BY relname`);
    expect(opts).toEqual([
      { relname: "action_margins", reloptions: ["security_invoker=true"] },
      { relname: "plan_margins", reloptions: ["security_invoker=true"] },
    ]);
    const [before] = await db.query(MARGINS_PROBE);
    await applySqlFiles(db, [MARGINS_FILE]);
    const [after] = await db.query(MARGINS_PROBE);
    expect(after.fingerprint).toBe(before.fingerprint);
    await db.query("DROP VIEW public.action_margins");
    expect(await db.query(MARGINS_PROBE)).toEqual([]);
    await applySqlFiles(db, [MARGINS_FILE]);
  });
});
