/**
 * The credit engine against a real PostgreSQL: consume_credits_rpc v2 and consume_credits_batch as the contract
 * states them, the additive schema, and the catalogue written from config.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_ACTIONS, parseConfig } from "../lib/config";
import { rolledBack } from "../lib/db";
import { CREDIT_FUNCTIONS } from "../components/creditFunctions";
import { CREDIT_SCHEMA_OBJECTS } from "../components/creditSchema";
import { functionProbe } from "../components/sqlFile";
import { asUser, freshDb, type TestDb } from "./helpers/db";
import { applyCreditEngine, balances, installCreditEngine, makeOrg, makeUser } from "./helpers/engine";

let db: TestDb;

// The default catalogue plus one action drawing on three pools, to see which short pool is named first.
const CAMPAIGN = { creditsCost: 7, ai: 1, whatsapp: 0, email: 2, sms: 1, description: "AI campaign" };

beforeAll(async () => {
  db = await freshDb();
  await installCreditEngine(db, { actions: { ...DEFAULT_ACTIONS, ai_campaign: CAMPAIGN } });
});
afterAll(async () => {
  await db?.drop();
});

async function rpc(org: string | null, action: string | null, quantity?: number | null, key?: string | null): Promise<any> {
  const args: unknown[] = [org, action];
  let sql = "SELECT public.consume_credits_rpc($1::uuid, $2::text) AS r";
  if (quantity !== undefined || key !== undefined) {
    args.push(quantity === undefined ? 1 : quantity, key ?? null);
    sql = "SELECT public.consume_credits_rpc($1::uuid, $2::text, $3::integer, $4::text) AS r";
  }
  return (await db.query(sql, args))[0].r;
}

async function batch(org: string, actions: unknown): Promise<any> {
  return (await db.query("SELECT public.consume_credits_batch($1::uuid, $2::jsonb) AS r", [org, JSON.stringify(actions)]))[0].r;
}

async function logs(org: string): Promise<any[]> {
  return db.query(
    `SELECT action_type, credits_consumed, credits_remaining, success, error_code, quantity, ai_consumed, whatsapp_consumed,
            email_consumed, sms_consumed, user_id, idempotency_key, credit_model, allocation_epoch
       FROM public.credit_consumption_logs WHERE organization_id = $1 ORDER BY id`,
    [org],
  );
}

async function catalogue(): Promise<any[]> {
  return db.query(`SELECT * FROM public.credit_actions ORDER BY action_type`);
}

const nothingLeft = { ai: 0, whatsapp: 0, email: 0, sms: 0 };

describe("consume_credits_rpc v2: quantity", () => {
  for (const [label, q] of [
    ["0", 0],
    ["-5", -5],
    ["NULL", null],
    ["100001", 100001],
  ] as const) {
    it(`refuses a quantity of ${label} with INVALID_QUANTITY and debits nothing`, async () => {
      const org = await makeOrg(db, { model: "multi", pools: { ai: 50 }, creditsRemaining: 50 });
      const r = await rpc(org, "ai_chat", q);
      expect(r).toEqual({
        success: false,
        error_code: "INVALID_QUANTITY",
        error: "quantity must be an integer from 1 to 100000",
        remaining_credits: 0,
        required_credits: 0,
      });
      expect(await balances(db, org)).toMatchObject({ ai: 50, credits_remaining: 50 });
      expect(await logs(org)).toEqual([]);
    });
  }

  it("accepts the largest quantity, 100000, and debits required x quantity", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 100000, sms: 3 } });
    const r = await rpc(org, "ai_chat", 100000);
    expect(r).toMatchObject({ success: true, quantity: 100000, consumed: { ai: 100000, whatsapp: 0, email: 0, sms: 0 }, remaining: { ai: 0, sms: 3 } });
    expect(await balances(db, org)).toMatchObject({ ai: 0, sms: 3 });
  });
});

describe("consume_credits_rpc v2: catalogue and accounts", () => {
  it("refuses an unknown action with UNKNOWN_ACTION and leaves the catalogue unchanged", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 10 } });
    const before = await catalogue();
    expect(await rpc(org, "ai_telepathy", 1)).toEqual({
      success: false,
      error_code: "UNKNOWN_ACTION",
      error: "unknown action type",
      remaining_credits: 0,
      required_credits: 0,
    });
    expect(await rpc(org, null, 1)).toMatchObject({ success: false, error_code: "UNKNOWN_ACTION" });
    expect(await catalogue()).toEqual(before);
    expect(before.map((a) => a.action_type)).not.toContain("ai_telepathy");
    expect(await balances(db, org)).toMatchObject({ ai: 10 });
    expect(await logs(org)).toEqual([]);
  });

  it("refuses an organization without a credit row with NO_CREDIT_ACCOUNT", async () => {
    const org = await makeOrg(db, { creditAccount: false });
    expect(await rpc(org, "ai_chat", 1)).toEqual({
      success: false,
      error_code: "NO_CREDIT_ACCOUNT",
      error: "the organization has no credit account",
      remaining_credits: 0,
      required_credits: 1,
    });
    expect(await rpc("00000000-0000-0000-0000-000000000000", "ai_chat")).toMatchObject({ error_code: "NO_CREDIT_ACCOUNT" });
    expect(await logs(org)).toEqual([]);
  });

  it("keeps two-argument calls working and is the only function of that name", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 3 } });
    expect(await rpc(org, "ai_chat")).toMatchObject({ success: true, action_type: "ai_chat", quantity: 1, remaining: { ai: 2 } });
    const fns = await db.query(
      `SELECT p.oid::regprocedure::text AS sig FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname = 'consume_credits_rpc'`,
    );
    expect(fns.map((f) => f.sig)).toEqual(["consume_credits_rpc(uuid,text,integer,text)"]);
  });
});

describe("consume_credits_rpc v2: the two models", () => {
  it("serves a multi organization from the pools the action requires, never from credits_remaining", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 20, whatsapp: 5, email: 7, sms: 2 }, creditsRemaining: 0 });
    const r = await rpc(org, "form_generation", 2);
    expect(r).toEqual({
      success: true,
      action_type: "form_generation",
      quantity: 2,
      credit_model: "multi",
      consumed: { ai: 10, whatsapp: 0, email: 0, sms: 0 },
      remaining: { ai: 10, whatsapp: 5, email: 7, sms: 2 },
      // v1's fields: the unified cost, and what is left in the pools the action draws on (ai here).
      credits_consumed: 10,
      remaining_credits: 10,
    });
    expect(await balances(db, org)).toEqual({ credit_model: "multi", credits_remaining: 0, ai: 10, whatsapp: 5, email: 7, sms: 2 });
    // credits_consumed is the unified cost (credits_cost 5 x 2): rollback sums it.
    expect(await logs(org)).toEqual([
      expect.objectContaining({
        action_type: "form_generation",
        success: true,
        error_code: null,
        quantity: 2,
        credits_consumed: 10,
        credits_remaining: 0,
        ai_consumed: 10,
        whatsapp_consumed: 0,
        email_consumed: 0,
        sms_consumed: 0,
        credit_model: "multi",
        allocation_epoch: 0,
        user_id: null,
        idempotency_key: null,
      }),
    ]);
  });

  it("debits several pools of one action and records each pool consumed", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 10, whatsapp: 10, email: 10, sms: 10 }, creditsRemaining: 100 });
    const r = await rpc(org, "ai_campaign", 3);
    expect(r).toMatchObject({ success: true, consumed: { ai: 3, whatsapp: 0, email: 6, sms: 3 }, remaining: { ai: 7, whatsapp: 10, email: 4, sms: 7 } });
    // The unified balance follows: 100 - the unified cost (7 x 3), so a rollback has nothing to recompute.
    expect(await balances(db, org)).toMatchObject({ credits_remaining: 79, ai: 7, whatsapp: 10, email: 4, sms: 7 });
    expect((await logs(org))[0]).toMatchObject({ credits_consumed: 21, ai_consumed: 3, email_consumed: 6, sms_consumed: 3 });
  });

  it("names the first short pool in the order ai, whatsapp, email, sms, debits nothing and logs the refusal", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 10, whatsapp: 0, email: 3, sms: 0 } });
    const r = await rpc(org, "ai_campaign", 2); // needs ai 2, email 4, sms 2: email and sms are short
    expect(r).toEqual({
      success: false,
      error_code: "INSUFFICIENT_CREDITS",
      error: "insufficient email credits: 4 required, 3 available",
      credit_type: "email",
      required: 4,
      available: 3,
      remaining_credits: 3,
      required_credits: 4,
    });
    expect(await balances(db, org)).toMatchObject({ ai: 10, email: 3, sms: 0 });
    expect(await logs(org)).toEqual([
      expect.objectContaining({
        action_type: "ai_campaign",
        success: false,
        error_code: "INSUFFICIENT_CREDITS",
        credits_consumed: 0,
        quantity: 2,
        ai_consumed: 0,
        email_consumed: 0,
        sms_consumed: 0,
        credit_model: "multi",
      }),
    ]);
  });

  it("serves an organization not yet migrated from credits_remaining with credits_cost x quantity, as v1", async () => {
    const org = await makeOrg(db, { model: "unified", creditsRemaining: 10, pools: { ai: 99 } });
    const r = await rpc(org, "ai_assistant", 3); // credits_cost 2
    expect(r).toMatchObject({
      success: true,
      action_type: "ai_assistant",
      quantity: 3,
      credit_model: "unified",
      consumed: nothingLeft,
      credits_consumed: 6,
      remaining_credits: 4,
    });
    expect(await balances(db, org)).toMatchObject({ credit_model: "unified", credits_remaining: 4, ai: 99 });
    expect(await rpc(org, "ai_assistant", 3)).toEqual({
      success: false,
      error_code: "INSUFFICIENT_CREDITS",
      error: "insufficient credits: 6 required, 4 available",
      credit_type: "unified",
      required: 6,
      available: 4,
      remaining_credits: 4,
      required_credits: 6,
    });
    expect(await balances(db, org)).toMatchObject({ credits_remaining: 4 });
    expect(await logs(org)).toEqual([
      expect.objectContaining({ success: true, credits_consumed: 6, credits_remaining: 4, quantity: 3, credit_model: "unified", ai_consumed: 0 }),
      expect.objectContaining({ success: false, error_code: "INSUFFICIENT_CREDITS", credits_consumed: 0, credit_model: "unified" }),
    ]);
  });

  it("serves a free action (no pool required) without touching any balance and still logs it", async () => {
    const org = await makeOrg(db, { model: "multi" });
    expect(await rpc(org, "create_crm_event", 4)).toMatchObject({ success: true, consumed: nothingLeft, remaining: nothingLeft });
    expect(await logs(org)).toEqual([expect.objectContaining({ success: true, credits_consumed: 0, quantity: 4 })]);
  });

  it("records the organization's allocation epoch on each log row", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    await db.query(`UPDATE public.organization_credits SET allocation_epoch = 3 WHERE organization_id = $1`, [org]);
    await rpc(org, "ai_chat");
    expect((await logs(org))[0]).toMatchObject({ allocation_epoch: 3, credit_model: "multi" });
  });

  it("answers a multi success with json_build_object's text, character for character (v2 writes that text out)", async () => {
    // An action type that JSON must escape (quote, backslash, tab, non-ASCII), beside ordinary and free actions; in a
    // transaction rolled back at the end, so the catalogue the other tests read is unchanged.
    const odd = 'ai "quoted" \\ back\tslash é ✓';
    const org = await makeOrg(db, { model: "multi", pools: { ai: 2_000_000_000, whatsapp: 5, email: 700, sms: 1000 } });
    const c = await db.client();
    try {
      await rolledBack(c, async () => {
        await c.query(
          `INSERT INTO public.credit_actions (action_type, credits_cost, description, ai_credits_required, email_credits_required)
         VALUES ($1, 3, 'escaping test', 2, 1)`,
          [odd],
        );
        for (const [action, quantity] of [
          ["ai_chat", 1],
          ["ai_campaign", 3],
          [odd, 7],
          ["create_crm_event", 2],
          ["form_generation", 100000],
        ] as const) {
          const {
            rows: [{ got }],
          } = await c.query(`SELECT public.consume_credits_rpc($1::uuid, $2::text, $3::integer)::text AS got`, [org, action, quantity]);
          const r = JSON.parse(got);
          expect(r, action).toMatchObject({ success: true, action_type: action, quantity, credit_model: "multi" });
          const {
            rows: [{ built }],
          } = await c.query(
            `SELECT json_build_object('success', true, 'action_type', $1::text, 'quantity', $2::integer, 'credit_model', 'multi',
                    'consumed', json_build_object('ai', $3::bigint, 'whatsapp', $4::bigint, 'email', $5::bigint, 'sms', $6::bigint),
                    'remaining', json_build_object('ai', $7::integer, 'whatsapp', $8::integer, 'email', $9::integer, 'sms', $10::integer),
                    'credits_consumed', $11::bigint, 'remaining_credits', $12::bigint)::text AS built`,
            [
              r.action_type,
              r.quantity,
              r.consumed.ai,
              r.consumed.whatsapp,
              r.consumed.email,
              r.consumed.sms,
              r.remaining.ai,
              r.remaining.whatsapp,
              r.remaining.email,
              r.remaining.sms,
              r.credits_consumed,
              r.remaining_credits,
            ],
          );
          expect(got, action).toBe(built);
        }
      });
    } finally {
      await c.end();
    }
  });
});

describe("consume_credits_rpc v2: trials", () => {
  it("refuses an expired trial with TRIAL_EXPIRED, debits nothing and logs success=false", async () => {
    const org = await makeOrg(db, {
      model: "multi",
      plan: "trial_14",
      pools: { ai: 50 },
      isTrial: true,
      cycleEndDate: new Date(Date.now() - 60_000),
    });
    expect(await rpc(org, "ai_chat", 1)).toEqual({
      success: false,
      error_code: "TRIAL_EXPIRED",
      error: "the trial period has ended",
      remaining_credits: 50,
      required_credits: 1,
    });
    expect(await balances(db, org)).toMatchObject({ ai: 50 });
    expect(await logs(org)).toEqual([expect.objectContaining({ success: false, error_code: "TRIAL_EXPIRED", credits_consumed: 0, ai_consumed: 0 })]);
  });

  it("serves a trial whose cycle has not ended", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 50 }, isTrial: true, cycleEndDate: new Date(Date.now() + 86_400_000) });
    expect(await rpc(org, "ai_chat", 1)).toMatchObject({ success: true, remaining: { ai: 49 } });
  });
});

describe("consume_credits_rpc v2: callers", () => {
  const call = (c: Client, org: string, fn = "consume_credits_rpc($1, 'ai_chat')") => c.query(`SELECT public.${fn} AS r`, [org]).then((x) => x.rows[0].r);

  it("serves an authenticated user for the organization of its own profile and logs the user", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    const user = await makeUser(db, org);
    const r = await asUser(db, { role: "authenticated", sub: user }, (c) => call(c, org));
    expect(r).toMatchObject({ success: true, remaining: { ai: 4 } });
    expect((await logs(org))[0]).toMatchObject({ user_id: user, success: true });
  });

  it("refuses an authenticated user calling for another organization with FORBIDDEN and writes nothing", async () => {
    const mine = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    const theirs = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    const user = await makeUser(db, mine);
    const r = await asUser(db, { role: "authenticated", sub: user }, (c) => call(c, theirs));
    expect(r).toEqual({
      success: false,
      error_code: "FORBIDDEN",
      error: "not allowed to consume credits for this organization",
      remaining_credits: 0,
      required_credits: 0,
    });
    const b = await asUser(db, { role: "authenticated", sub: user }, (c) => call(c, theirs, 'consume_credits_batch($1, \'[{"action_type":"ai_chat"}]\')'));
    expect(b).toMatchObject({ success: false, error_code: "FORBIDDEN" });
    expect(await balances(db, theirs)).toMatchObject({ ai: 5 });
    expect(await logs(theirs)).toEqual([]);
  });

  it("refuses an authenticated session without a user, or whose user has no profile, with FORBIDDEN", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    expect(await asUser(db, { role: "authenticated" }, (c) => call(c, org))).toMatchObject({ error_code: "FORBIDDEN" });
    const stranger = "11111111-2222-3333-4444-555555555555";
    expect(await asUser(db, { role: "authenticated", sub: stranger }, (c) => call(c, org))).toMatchObject({ error_code: "FORBIDDEN" });
    expect(await balances(db, org)).toMatchObject({ ai: 5 });
  });

  it("serves service_role for any organization", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    expect(await asUser(db, { role: "service_role" }, (c) => call(c, org))).toMatchObject({ success: true, remaining: { ai: 4 } });
  });

  it("judges an owner session that carries JWT claims by the claims' role", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    const user = await makeUser(db, org);
    const withClaims = async (claims: object) => {
      const c = await db.client();
      try {
        await c.query("SELECT set_config('request.jwt.claims', $1, false)", [JSON.stringify(claims)]);
        return await call(c, org);
      } finally {
        await c.end();
      }
    };
    expect(await withClaims({ role: "anon" })).toMatchObject({ error_code: "FORBIDDEN" });
    expect(await withClaims({ role: "authenticated", sub: "11111111-2222-3333-4444-555555555555" })).toMatchObject({ error_code: "FORBIDDEN" });
    expect(await withClaims({ role: "authenticated", sub: user })).toMatchObject({ success: true });
    expect(await withClaims({ role: "service_role" })).toMatchObject({ success: true });
    expect(await balances(db, org)).toMatchObject({ ai: 3 });
  });

  it("gives anon no EXECUTE privilege on either function (permission denied)", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    await expect(asUser(db, { role: "anon" }, (c) => call(c, org))).rejects.toMatchObject({ code: "42501" });
    await expect(asUser(db, { role: "anon" }, (c) => call(c, org, "consume_credits_batch($1, '[]')"))).rejects.toMatchObject({ code: "42501" });
    expect(await balances(db, org)).toMatchObject({ ai: 5 });
  });

  it("grants EXECUTE to authenticated and service_role only: not to PUBLIC, not to anon", async () => {
    const rows = await db.query(
      `SELECT p.proname, coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC') AS grantee
         FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
        WHERE p.oid IN ('public.consume_credits_rpc(uuid,text,integer,text)'::regprocedure, 'public.consume_credits_batch(uuid,jsonb)'::regprocedure)
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
        ORDER BY 1, 2`,
    );
    expect(rows).toEqual([
      { proname: "consume_credits_batch", grantee: "authenticated" },
      { proname: "consume_credits_batch", grantee: "service_role" },
      { proname: "consume_credits_rpc", grantee: "authenticated" },
      { proname: "consume_credits_rpc", grantee: "service_role" },
    ]);
    const [f] = await db.query(
      `SELECT p.prosecdef, p.proconfig FROM pg_proc p WHERE p.oid = 'public.consume_credits_rpc(uuid,text,integer,text)'::regprocedure`,
    );
    // Pinned, ending with pg_temp: an empty path would still search the caller's temporary schema first.
    expect(f).toEqual({ prosecdef: true, proconfig: ["search_path=pg_catalog, pg_temp"] });
  });

  it("keeps schema guardian out of reach of anon, authenticated and PUBLIC", async () => {
    const [r] = await db.query(
      `SELECT has_schema_privilege('anon', 'guardian', 'USAGE') AS anon, has_schema_privilege('authenticated', 'guardian', 'USAGE') AS auth,
              (SELECT count(*)::int FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a WHERE n.nspname = 'guardian' AND a.grantee = 0) AS public_grants`,
    );
    expect(r).toEqual({ anon: false, auth: false, public_grants: 0 });
  });
});

describe("consume_credits_rpc v2: idempotency", () => {
  it("returns the first call's result for a repeated key and debits once", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 10 } });
    const first = await rpc(org, "ai_chat", 2, "req-1");
    const again = await rpc(org, "ai_chat", 2, "req-1");
    expect(first).toMatchObject({ success: true, remaining: { ai: 8 } });
    expect(again).toEqual(first);
    expect(await balances(db, org)).toMatchObject({ ai: 8 });
    // Only the key's sha256 is kept: a caller's free text is never stored.
    const hashed = crypto.createHash("sha256").update("req-1").digest("hex");
    expect(await logs(org)).toEqual([expect.objectContaining({ success: true, idempotency_key: hashed, ai_consumed: 2 })]);
    expect(await db.query(`SELECT idempotency_key FROM guardian.idempotency_keys WHERE organization_id = $1`, [org])).toEqual([{ idempotency_key: hashed }]);
    expect(await rpc(org, "ai_chat", 2, "req-2")).toMatchObject({ success: true, remaining: { ai: 6 } });
  });

  it("refuses a key reused with another action or quantity with IDEMPOTENCY_KEY_REUSED, debits nothing and logs it", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 10, email: 10 } });
    const first = await rpc(org, "ai_chat", 2, "order-7");
    expect(first).toMatchObject({ success: true, remaining: { ai: 8 } });
    for (const [action, qty] of [
      ["ai_chat", 3],
      ["email_send", 2],
    ] as const) {
      expect(await rpc(org, action, qty, "order-7")).toEqual({
        success: false,
        error_code: "IDEMPOTENCY_KEY_REUSED",
        error: "idempotency key already used with action ai_chat x2",
        remaining_credits: 0,
        required_credits: action === "ai_chat" ? 3 : 2,
      });
    }
    expect(await balances(db, org)).toMatchObject({ ai: 8, email: 10 });
    expect(await rpc(org, "ai_chat", 2, "order-7")).toEqual(first); // the original request still replays
    expect((await logs(org)).map((l) => [l.success, l.error_code, l.credits_consumed])).toEqual([
      [true, null, 2],
      [false, "IDEMPOTENCY_KEY_REUSED", 0],
      [false, "IDEMPOTENCY_KEY_REUSED", 0],
    ]);
  });

  it("keeps keys per organization: the same key for another organization is a new call", async () => {
    const a = await makeOrg(db, { model: "multi", pools: { ai: 10 } });
    const b = await makeOrg(db, { model: "multi", pools: { ai: 10 } });
    await rpc(a, "ai_chat", 1, "shared");
    expect(await rpc(b, "ai_chat", 1, "shared")).toMatchObject({ success: true, remaining: { ai: 9 } });
    expect(await balances(db, a)).toMatchObject({ ai: 9 });
  });

  it("replays a refusal for its key (one key, one attempt) while a new key is served", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 0 } });
    const refused = await rpc(org, "ai_chat", 1, "k");
    expect(refused).toMatchObject({ error_code: "INSUFFICIENT_CREDITS" });
    await db.query(`UPDATE public.organization_credits SET ai_credits_available = 5 WHERE organization_id = $1`, [org]);
    expect(await rpc(org, "ai_chat", 1, "k")).toEqual(refused);
    expect(await rpc(org, "ai_chat", 1, "k2")).toMatchObject({ success: true, remaining: { ai: 4 } });
    const h = (k: string) => crypto.createHash("sha256").update(k).digest("hex");
    expect((await logs(org)).map((l) => [l.success, l.idempotency_key])).toEqual([
      [false, h("k")],
      [true, h("k2")],
    ]);
  });

  it("treats an empty key as no key, and accepts a key of any length", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    await rpc(org, "ai_chat", 1, "");
    expect(await rpc(org, "ai_chat", 1, "")).toMatchObject({ success: true, remaining: { ai: 3 } });
    const long = "x".repeat(20_000);
    const first = await rpc(org, "ai_chat", 1, long);
    expect(await rpc(org, "ai_chat", 1, long)).toEqual(first);
    expect(await balances(db, org)).toMatchObject({ ai: 2 });
  });

  it("does not store validation refusals: a key first used with a bad quantity is served once the call is valid", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 } });
    expect(await rpc(org, "ai_chat", 0, "k")).toMatchObject({ error_code: "INVALID_QUANTITY" });
    expect(await rpc(org, "ai_chat", 1, "k")).toMatchObject({ success: true });
    expect(await rpc(org, "ai_chat", 1, "k")).toMatchObject({ success: true, remaining: { ai: 4 } });
    expect(await balances(db, org)).toMatchObject({ ai: 4 });
  });
});

describe("consume_credits_batch", () => {
  it("debits the totals per pool and writes one log row per action", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 20, whatsapp: 5, email: 30, sms: 1 }, creditsRemaining: 7 });
    const r = await batch(org, [{ action_type: "ai_chat", quantity: 3 }, { action_type: "bulk_email", quantity: 2 }, { action_type: "whatsapp_message" }]);
    expect(r).toEqual({
      success: true,
      credit_model: "multi",
      actions: [
        { action_type: "ai_chat", quantity: 3, consumed: { ai: 3, whatsapp: 0, email: 0, sms: 0 } },
        { action_type: "bulk_email", quantity: 2, consumed: { ai: 0, whatsapp: 0, email: 20, sms: 0 } },
        { action_type: "whatsapp_message", quantity: 1, consumed: { ai: 0, whatsapp: 1, email: 0, sms: 0 } },
      ],
      consumed: { ai: 3, whatsapp: 1, email: 20, sms: 0 },
      remaining: { ai: 17, whatsapp: 4, email: 10, sms: 1 },
      credits_consumed: 24,
      remaining_credits: 32,
    });
    // The unified balance follows, floored at 0 (7 - 24): never a reason to refuse.
    expect(await balances(db, org)).toMatchObject({ credits_remaining: 0, ai: 17, whatsapp: 4, email: 10, sms: 1 });
    expect(
      (await logs(org)).map((l) => [l.action_type, l.success, l.quantity, l.credits_consumed, l.ai_consumed, l.whatsapp_consumed, l.email_consumed]),
    ).toEqual([
      ["ai_chat", true, 3, 3, 3, 0, 0],
      ["bulk_email", true, 2, 20, 0, 0, 20],
      ["whatsapp_message", true, 1, 1, 0, 1, 0],
    ]);
  });

  it("changes nothing when one pool is short, names it with the batch's total requirement, and logs one row", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 20, whatsapp: 5, email: 15, sms: 1 } });
    const r = await batch(org, [
      { action_type: "ai_chat", quantity: 3 },
      { action_type: "bulk_email", quantity: 2 },
    ]);
    expect(r).toEqual({
      success: false,
      error_code: "INSUFFICIENT_CREDITS",
      error: "insufficient email credits: 20 required, 15 available",
      credit_type: "email",
      required: 20,
      available: 15,
      remaining_credits: 15,
      required_credits: 20,
    });
    expect(await balances(db, org)).toMatchObject({ ai: 20, whatsapp: 5, email: 15, sms: 1 });
    const l = await logs(org);
    expect(l.filter((x) => x.success)).toEqual([]);
    // One row for the refused batch: its first element drawing on the short pool.
    expect(l.map((x) => [x.action_type, x.error_code, x.credits_consumed])).toEqual([["bulk_email", "INSUFFICIENT_CREDITS", 0]]);
  });

  it("validates every element before anything: reports the first bad one by index and writes nothing", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 20 } });
    const before = await catalogue();
    expect(await batch(org, [{ action_type: "ai_chat" }, { action_type: "ai_chat", quantity: 0 }])).toEqual({
      success: false,
      error_code: "INVALID_QUANTITY",
      index: 1,
      error: "p_actions[1]: quantity must be an integer from 1 to 100000",
      remaining_credits: 0,
      required_credits: 0,
    });
    expect(await batch(org, [{ action_type: "ai_chat", quantity: 1.5 }])).toMatchObject({ error_code: "INVALID_QUANTITY", index: 0 });
    expect(await batch(org, [{ action_type: "ai_chat", quantity: "2" }])).toMatchObject({ error_code: "INVALID_QUANTITY", index: 0 });
    expect(await batch(org, [{ action_type: "ai_chat", quantity: null }])).toMatchObject({ error_code: "INVALID_QUANTITY", index: 0 });
    expect(await batch(org, [{ action_type: "ai_chat" }, { action_type: "mind_reading", quantity: 1 }])).toEqual({
      success: false,
      error_code: "UNKNOWN_ACTION",
      index: 1,
      error: "p_actions[1]: unknown action type",
      remaining_credits: 0,
      required_credits: 0,
    });
    expect(await batch(org, ["ai_chat"])).toMatchObject({ error_code: "UNKNOWN_ACTION", index: 0 });
    expect(await batch(org, [])).toMatchObject({ error_code: "INVALID_QUANTITY" });
    expect(await batch(org, { action_type: "ai_chat" })).toMatchObject({ error_code: "INVALID_QUANTITY" });
    expect(await catalogue()).toEqual(before);
    expect(await balances(db, org)).toMatchObject({ ai: 20 });
    expect(await logs(org)).toEqual([]);
  });

  it("serves an organization not yet migrated from credits_remaining with the summed unified cost", async () => {
    const org = await makeOrg(db, { model: "unified", creditsRemaining: 20 });
    const r = await batch(org, [
      { action_type: "automation_run", quantity: 2 },
      { action_type: "sms_send", quantity: 3 },
    ]);
    expect(r).toMatchObject({ success: true, credit_model: "unified", consumed: nothingLeft, credits_consumed: 12, remaining_credits: 8 });
    expect(await balances(db, org)).toMatchObject({ credits_remaining: 8 });
    expect((await logs(org)).map((l) => [l.action_type, l.credits_consumed, l.credits_remaining])).toEqual([
      ["automation_run", 6, 14],
      ["sms_send", 6, 8],
    ]);
    expect(await batch(org, [{ action_type: "bulk_email" }])).toMatchObject({
      error_code: "INSUFFICIENT_CREDITS",
      credit_type: "unified",
      required: 10,
      available: 8,
    });
  });

  it("refuses a batch of more than 100 actions with BATCH_TOO_LARGE and writes nothing", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 500 } });
    const r = await batch(
      org,
      Array.from({ length: 101 }, () => ({ action_type: "ai_chat" })),
    );
    expect(r).toEqual({
      success: false,
      error_code: "BATCH_TOO_LARGE",
      error: "p_actions has 101 elements; a batch takes at most 100",
      remaining_credits: 0,
      required_credits: 0,
    });
    expect(await logs(org)).toEqual([]);
    expect(await balances(db, org)).toMatchObject({ ai: 500 });
    expect(
      await batch(
        org,
        Array.from({ length: 100 }, () => ({ action_type: "ai_chat" })),
      ),
    ).toMatchObject({ success: true });
  });

  it("refuses an expired trial with TRIAL_EXPIRED and logs the refused batch once", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 5 }, isTrial: true, cycleEndDate: new Date(Date.now() - 1000) });
    expect(await batch(org, [{ action_type: "ai_chat" }, { action_type: "ai_chat" }])).toMatchObject({ error_code: "TRIAL_EXPIRED" });
    expect((await logs(org)).map((l) => [l.success, l.error_code])).toEqual([[false, "TRIAL_EXPIRED"]]);
    expect(await balances(db, org)).toMatchObject({ ai: 5 });
  });
});

describe("concurrency", () => {
  it("32 connections making 3,000 calls on 1,000 AI credits: exactly 1,000 successes, 0 left, 1,000 success rows", async () => {
    const org = await makeOrg(db, { model: "multi", pools: { ai: 1000 } });
    const clients = await Promise.all(Array.from({ length: 32 }, () => db.client()));
    const outcomes: Record<string, number> = {};
    let issued = 0;
    try {
      await Promise.all(
        clients.map(async (c) => {
          await c.query("SET ROLE service_role");
          while (issued < 3000) {
            issued++;
            const r = (await c.query("SELECT public.consume_credits_rpc($1, 'ai_chat') AS r", [org])).rows[0].r;
            const k = r.success ? "success" : r.error_code;
            outcomes[k] = (outcomes[k] ?? 0) + 1;
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    expect(outcomes).toEqual({ success: 1000, INSUFFICIENT_CREDITS: 2000 });
    expect(await balances(db, org)).toMatchObject({ ai: 0 });
    const [counts] = await db.query(
      `SELECT count(*) FILTER (WHERE success)::int AS ok, count(*) FILTER (WHERE NOT success)::int AS refused,
              coalesce(sum(ai_consumed) FILTER (WHERE success), 0)::int AS ai
         FROM public.credit_consumption_logs WHERE organization_id = $1`,
      [org],
    );
    expect(counts).toEqual({ ok: 1000, refused: 2000, ai: 1000 });
  });
});

describe("the credit engine's SQL", () => {
  it("finds every object with its probe after install, and re-applying every file changes none of them", async () => {
    const probes = [...CREDIT_SCHEMA_OBJECTS.map((s) => s.probeSql), ...CREDIT_FUNCTIONS.map((f) => functionProbe(f.signature))];
    const fingerprints = async () => Promise.all(probes.map(async (p) => (await db.query(p)).map((r) => r.fingerprint)));
    const before = await fingerprints();
    expect(before.every((rows) => rows.length === 1 && typeof rows[0] === "string")).toBe(true);
    const c = await db.client();
    try {
      await applyCreditEngine(
        c,
        parseConfig({
          databaseUrl: db.url,
          actions: { ...DEFAULT_ACTIONS, ai_campaign: CAMPAIGN },
        }),
      );
    } finally {
      await c.end();
    }
    expect(await fingerprints()).toEqual(before);
  });

  it("validates every Phase 3.5 CHECK constraint", async () => {
    const rows = await db.query(
      `SELECT conrelid::regclass::text AS tbl, conname, convalidated FROM pg_constraint
        WHERE conrelid IN ('public.organization_credits'::regclass, 'public.credit_actions'::regclass, 'public.credit_consumption_logs'::regclass)
          AND contype = 'c' ORDER BY 1, 2`,
    );
    expect(rows.length).toBe(13);
    expect(rows.filter((r) => !r.convalidated)).toEqual([]);
    await expect(db.query(`UPDATE public.organization_credits SET ai_credits_available = -1`)).rejects.toMatchObject({ code: "23514" });
  });

  it("writes the configured pool costs and the legacy action types to the catalogue, by exact name", async () => {
    const rows = await db.query(
      `SELECT action_type, credits_cost, ai_credits_required AS ai, whatsapp_credits_required AS whatsapp,
              email_credits_required AS email, sms_credits_required AS sms
         FROM public.credit_actions WHERE action_type IN ('ai_email_generation', 'send_welcome_email', 'sms_send', 'ai_assistant') ORDER BY 1`,
    );
    expect(rows).toEqual([
      { action_type: "ai_assistant", credits_cost: 2, ai: 1, whatsapp: 0, email: 0, sms: 0 },
      { action_type: "ai_email_generation", credits_cost: 1, ai: 1, whatsapp: 0, email: 0, sms: 0 },
      { action_type: "send_welcome_email", credits_cost: 1, ai: 0, whatsapp: 0, email: 1, sms: 0 },
      { action_type: "sms_send", credits_cost: 2, ai: 0, whatsapp: 0, email: 0, sms: 1 },
    ]);
    const [{ n }] = await db.query(`SELECT count(*)::int AS n FROM public.credit_actions`);
    expect(n).toBe(Object.keys(DEFAULT_ACTIONS).length + 1);
    const plans = await db.query(`SELECT plan_name, price_eur::float AS price, ai, whatsapp, email, sms FROM guardian.plan_catalogue ORDER BY plan_name`);
    expect(plans.find((p) => p.plan_name === "premium")).toEqual({ plan_name: "premium", price: 149, ai: 1500, whatsapp: 1200, email: 20000, sms: 500 });
    expect(plans.find((p) => p.plan_name === "enterprise")?.price).toBeNull();
    expect(await db.query(`SELECT ai::float, whatsapp::float, email::float, sms::float FROM guardian.allocation_split`)).toEqual([
      { ai: 0.4, whatsapp: 0.3, email: 0.3, sms: 0 },
    ]);
  });
});
