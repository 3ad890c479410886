/**
 * The catalogue as config: the SQL generated from guardian:actions / plans / split / providerCosts, and the
 * go/no-go detection of catalogue actions the config does not map.
 */
import { describe, expect, it } from "vitest";
import { actionCatalogueProbe, actionCatalogueSql, findUnmappedActions, planCatalogueSql, priceChanges, sqlNumber, sqlString } from "../../lib/catalogueSql";
import { DEFAULT_ACTIONS, parseConfig } from "../../lib/config";
import { sha256 } from "../../lib/sql";

const config = (raw: Record<string, unknown> = {}) => parseConfig({ databaseUrl: "postgres://u@h/db", ...raw });

function reversed<T>(rec: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(rec).reverse());
}

describe("priceChanges", () => {
  it("lists each live price a configured creditsCost changes, and nothing for actions not live yet or unpriced", () => {
    const c = config({ actions: { ai_lead_scoring: { creditsCost: 1, ai: 1 }, ai_chat: { creditsCost: 1, ai: 1 }, brand_new: { creditsCost: 3, ai: 3 } } });
    expect(priceChanges({ ai_lead_scoring: 5, ai_chat: 1, sms_send: 2 }, c)).toEqual([{ action: "ai_lead_scoring", live: 5, config: 1 }]);
  });
});

describe("actionCatalogueSql", () => {
  it("is the same text whatever order the config lists the actions in", () => {
    const a = actionCatalogueSql(config());
    const b = actionCatalogueSql(config({ actions: reversed(DEFAULT_ACTIONS) }));
    expect(b).toBe(a);
    expect(sha256(b)).toBe(sha256(a));
  });

  it("changes (and so does its sha256) when, and only when, an action's cost changes", () => {
    const base = actionCatalogueSql(config());
    const same = actionCatalogueSql(config({ actions: { ...DEFAULT_ACTIONS } }));
    const cheaper = actionCatalogueSql(config({ actions: { ...DEFAULT_ACTIONS, bulk_email: { ...DEFAULT_ACTIONS.bulk_email, email: 8 } } }));
    expect(sha256(same)).toBe(sha256(base));
    expect(sha256(cheaper)).not.toBe(sha256(base));
    // No creditsCost: the live price stays; a missing row would be inserted at the sum of its pools.
    expect(cheaper).toContain("('bulk_email', 8, 0, 0, 8, 0, 'Bulk e-mail campaign')");
    expect(cheaper).not.toMatch(/UPDATE public\.credit_actions/);
  });

  it("keeps every live price unless the config sets creditsCost, and sets prices only in the multi model", () => {
    const priced = config({ actions: { ai_lead_scoring: { creditsCost: 1, ai: 1 } } });
    const multi = actionCatalogueSql(priced, { setPrices: true });
    expect(multi).toContain("UPDATE public.credit_actions AS a SET credits_cost = v.cost");
    expect(multi).toContain("    ('ai_lead_scoring', 1)");
    expect(multi).not.toMatch(/\('ai_chat', \d+\)/);
    // The upsert itself never sets credits_cost on an existing row.
    expect(multi.split("ON CONFLICT")[1].split("UPDATE public.credit_actions")[0]).not.toContain("credits_cost =");
    expect(actionCatalogueSql(priced, { setPrices: false })).not.toContain("UPDATE public.credit_actions");
  });

  it("upserts every configured action, legacy types included, with its unified cost and pool costs in POOLS order", () => {
    const sql = actionCatalogueSql(config());
    expect(sql).toContain(
      "INSERT INTO public.credit_actions AS a (action_type, credits_cost, ai_credits_required, whatsapp_credits_required, email_credits_required, sms_credits_required, description)",
    );
    const rows = sql.split("\n").filter((l) => l.startsWith("  ('"));
    expect(rows.length).toBe(Object.keys(DEFAULT_ACTIONS).length);
    expect(rows).toContain("  ('ai_email_generation', 1, 1, 0, 0, 0, 'AI e-mail drafting'),");
    // the cost a row is inserted with where the live catalogue lacks it (a live row keeps its price: sms_send 2)
    expect(rows).toContain("  ('sms_send', 1, 0, 0, 0, 1, 'SMS'),");
    expect(rows).toContain("  ('create_crm_event', 0, 0, 0, 0, 0, 'CRM event (free)'),");
    expect(rows.map((r) => r.slice(4, r.indexOf("'", 4)))).toEqual(Object.keys(DEFAULT_ACTIONS).sort());
    expect(sql).toContain("ON CONFLICT (action_type) DO UPDATE");
    expect(sql).not.toMatch(/DELETE/i);
  });

  it("quotes descriptions and keeps the database's description when the config has none", () => {
    const sql = actionCatalogueSql(
      config({
        actions: {
          quote_test: { creditsCost: 1, ai: 1, description: "it's a 'test'" },
          bare: { creditsCost: 2, sms: 1 },
        },
      }),
    );
    expect(sql).toContain("('quote_test', 1, 1, 0, 0, 0, 'it''s a ''test''')");
    expect(sql).toContain("('bare', 2, 0, 0, 0, 1, NULL)");
    // An existing row's description is the CRM's: the conflict branch sets the pool requirements only.
    expect(sql.slice(sql.indexOf("ON CONFLICT"))).not.toContain("description");
  });

  it("probes for exactly the configured actions", () => {
    const probe = actionCatalogueProbe(config({ actions: { b: { creditsCost: 1 }, a: { creditsCost: 1 } } }));
    expect(probe).toContain("ARRAY['a', 'b']::text[]");
    expect(probe).toContain("HAVING count(*) = 2");
  });
});

describe("planCatalogueSql", () => {
  it("writes every plan (NULL price for a custom-priced plan), removes plans the config dropped, the split and the provider costs", () => {
    const sql = planCatalogueSql(config());
    expect(sql).toContain("  ('enterprise', NULL, 1500, 1200, 20000, 500),");
    expect(sql).toContain("  ('starter', 19, 200, 150, 1000, 50),");
    expect(sql).toContain(
      "DELETE FROM guardian.plan_catalogue WHERE plan_name <> ALL (ARRAY['business', 'enterprise', 'premium', 'professional', 'starter', 'trial_14']::text[]);",
    );
    expect(sql).toContain("VALUES (true, 0.4, 0.3, 0.3, 0)");
    expect(sql).toContain("  ('whatsapp', 0.0157),");
    expect(sql).toContain("  ('sms', 0.05)\n");
  });

  it("is the same text whatever order the plans are listed in, and differs when a split share changes", () => {
    const plans = config().plans;
    expect(planCatalogueSql(config({ plans: reversed(plans) }))).toBe(planCatalogueSql(config()));
    const other = planCatalogueSql(config({ split: { ai: 0.5, whatsapp: 0.25, email: 0.25, sms: 0 } }));
    expect(other).toContain("VALUES (true, 0.5, 0.25, 0.25, 0)");
    expect(sha256(other)).not.toBe(sha256(planCatalogueSql(config())));
  });

  it("empties the plan catalogue when the config has no plan", () => {
    const sql = planCatalogueSql(config({ plans: {} }));
    expect(sql).not.toContain("INSERT INTO guardian.plan_catalogue");
    expect(sql).toContain("DELETE FROM guardian.plan_catalogue WHERE plan_name <> ALL (ARRAY[]::text[]);");
  });
});

describe("SQL literals", () => {
  it("refuses what it cannot write as a literal", () => {
    expect(() => sqlNumber(Number.NaN)).toThrow("expected a finite number, got NaN");
    expect(() => sqlNumber(Infinity)).toThrow("expected a finite number, got Infinity");
    expect(() => sqlString("a\u0000b")).toThrow("a SQL string cannot contain a NUL character");
    expect(sqlString("O'Brien\\")).toBe("'O''Brien\\'");
  });
});

describe("findUnmappedActions", () => {
  const cfg = config();

  it("finds nothing when every catalogue action is mapped", () => {
    expect(findUnmappedActions(["ai_chat", "sms_send", "bulk_email"], cfg)).toEqual([]);
  });

  it("names each unmapped action once, sorted", () => {
    expect(findUnmappedActions(["zz_new", "sms_send", "aa_new", "zz_new"], cfg)).toEqual(["aa_new", "zz_new"]);
  });

  it("matches by exact name, never by substring or case", () => {
    // "email" is contained in "email_send" and "ai_email_generation", and "ai" in many names: none of that maps it.
    expect(findUnmappedActions(["email", "ai", "AI_CHAT", "ai_chat ", "whatsapp"], cfg)).toEqual(["AI_CHAT", "ai", "ai_chat ", "email", "whatsapp"]);
  });

  it("does not take inherited object properties for mappings", () => {
    expect(findUnmappedActions(["constructor", "toString", "__proto__", "hasOwnProperty"], cfg)).toEqual([
      "__proto__",
      "constructor",
      "hasOwnProperty",
      "toString",
    ]);
  });
});
