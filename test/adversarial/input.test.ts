/**
 * Adversarial suite (issue 12), input: hostile arguments to the credit functions, idempotency keys across
 * organizations, and 32 concurrent callers on one organization. One test per attack; each asserts what was refused
 * and that nothing changed (or, for the calls that legitimately spend, exactly what they spent and nothing else).
 */
import type { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeOrg, makeUser } from "../helpers/engine";
import { attempt, battlefield, type Battlefield, state, type Who } from "./fixture";

let bf: Battlefield;
beforeAll(async () => {
  bf = await battlefield("adv_input");
});
afterAll(() => bf?.drop());

const service: Who = { role: "service_role" };
const memberA = (): Who => ({ role: "authenticated", sub: bf.user.memberA });
const memberB = (): Who => ({ role: "authenticated", sub: bf.user.memberB });

async function call(who: Who, sql: string, params: unknown[]): Promise<any> {
  const r = await attempt(bf.db, who, sql, params);
  if (r.error) throw r.error;
  return r.rows![0].r;
}

describe("quantities out of range", () => {
  for (const [label, q] of [
    ["0", 0],
    ["-5", -5],
    ["100001", 100001],
    ["NULL", null],
    ["2147483647", 2147483647],
  ] as const) {
    it(`quantity ${label} on its own org is INVALID_QUANTITY, as a member and as service_role; nothing changes`, async () => {
      const before = await state(bf.db);
      for (const who of [memberA(), service]) {
        const r = await call(who, `SELECT public.consume_credits_rpc($1, 'ai_chat', $2, $3) AS r`, [bf.org.A, q, `q-${label}`]);
        expect(r).toMatchObject({ success: false, error_code: "INVALID_QUANTITY" });
      }
      expect(await state(bf.db)).toEqual(before);
    });
  }

  it("a batch with one element out of range is INVALID_QUANTITY as a whole; nothing changes", async () => {
    const before = await state(bf.db);
    const r = await call(memberA(), `SELECT public.consume_credits_batch($1, $2::jsonb) AS r`, [
      bf.org.A,
      JSON.stringify([
        { action_type: "ai_chat", quantity: 1 },
        { action_type: "ai_chat", quantity: -5 },
      ]),
    ]);
    expect(r).toMatchObject({ success: false, error_code: "INVALID_QUANTITY", index: 1 });
    expect(await state(bf.db)).toEqual(before);
  });

  it("a quantity that is not an integer is refused before anything runs", async () => {
    const before = await state(bf.db);
    const r = await attempt(bf.db, memberA(), `SELECT public.consume_credits_rpc($1, 'ai_chat', $2::integer) AS r`, [bf.org.A, "1.5"]);
    expect(r.error?.message).toBe('invalid input syntax for type integer: "1.5"');
    expect(await state(bf.db)).toEqual(before);
  });
});

describe("growing the append-only log for free (issue 22, finding 5)", () => {
  const logRows = async () =>
    (
      await bf.db.query(`SELECT success, error_code, user_id FROM public.credit_consumption_logs WHERE organization_id = $1 AND id > $2 ORDER BY id`, [
        bf.org.A,
        mark,
      ])
    ).map((l: any) => [l.success, l.error_code, l.user_id]);
  let mark = 0;
  beforeAll(async () => {
    [{ mark }] = await bf.db.query(`SELECT coalesce(max(id), 0)::int AS mark FROM public.credit_consumption_logs`);
  });

  it("a member's batch of 1,000 actions is BATCH_TOO_LARGE: no row written, nothing debited", async () => {
    const before = await state(bf.db);
    const r = await call(memberA(), `SELECT public.consume_credits_batch($1, $2::jsonb) AS r`, [
      bf.org.A,
      JSON.stringify(Array.from({ length: 1000 }, () => ({ action_type: "ai_chat", quantity: 1000 }))),
    ]);
    expect(r).toMatchObject({ success: false, error_code: "BATCH_TOO_LARGE" });
    expect(await state(bf.db)).toEqual(before);
  });

  it("a member's batch of 100 actions it cannot afford writes one refusal row, whoever it is", async () => {
    const r = await call(memberA(), `SELECT public.consume_credits_batch($1, $2::jsonb) AS r`, [
      bf.org.A,
      JSON.stringify(Array.from({ length: 100 }, () => ({ action_type: "ai_chat", quantity: 1000 }))),
    ]);
    expect(r).toMatchObject({ success: false, error_code: "INSUFFICIENT_CREDITS", credit_type: "ai" });
    expect(await logRows()).toEqual([[false, "INSUFFICIENT_CREDITS", bf.user.memberA]]);
  });
});

describe("injection in action types", () => {
  const payloads = [
    "ai_chat'; UPDATE public.organization_credits SET ai_credits_available = 1000000; --",
    "ai_chat' OR '1'='1",
    "x'); DROP TABLE public.credit_consumption_logs; --",
    "ai_%",
    "%",
    "AI_CHAT",
    " ai_chat",
    "ai_chat\u0000",
    "ai_chat$$; DELETE FROM public.credit_actions; $$",
    "a".repeat(10000),
    "",
  ];
  for (const p of payloads) {
    it(`action type ${JSON.stringify(p.length > 60 ? `${p.slice(0, 20)}… (${p.length} chars)` : p)} is UNKNOWN_ACTION (or refused); the catalogue and balances are unchanged`, async () => {
      const before = await state(bf.db);
      const r = await attempt(bf.db, memberA(), `SELECT public.consume_credits_rpc($1, $2, 1) AS r`, [bf.org.A, p]);
      if (r.error)
        expect(r.error.message).toMatch(/invalid byte sequence|null character/); // \0 never reaches SQL
      else expect(r.rows![0].r).toMatchObject({ success: false, error_code: "UNKNOWN_ACTION" });
      const b = await attempt(bf.db, memberA(), `SELECT public.consume_credits_batch($1, $2::jsonb) AS r`, [
        bf.org.A,
        JSON.stringify([{ action_type: p, quantity: 1 }]),
      ]);
      if (b.error) expect(b.error.message).toMatch(/unsupported Unicode escape sequence|null character|invalid byte sequence/);
      else expect(b.rows![0].r).toMatchObject({ success: false, error_code: "UNKNOWN_ACTION" });
      expect(await state(bf.db)).toEqual(before);
    });
  }
});

describe("idempotency keys across organizations", () => {
  it("B reusing A's key gets its own call (debits B once), never A's stored result; A is untouched", async () => {
    const key = "order-42";
    const a = await call(service, `SELECT public.consume_credits_rpc($1, 'ai_chat', 3, $2) AS r`, [bf.org.A, key]);
    expect(a.success).toBe(true);
    const before = await state(bf.db);
    const b = await call(memberB(), `SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, [bf.org.B, key]);
    expect(b).toMatchObject({ success: true, quantity: 1, consumed: { ai: 1 } });
    expect(b.remaining.ai).toBe(Number(before.balances[bf.org.B].ai) - 1);
    const after = await state(bf.db);
    expect(after.balances[bf.org.A]).toEqual(before.balances[bf.org.A]);
    expect(after.balances[bf.org.B]).toEqual({
      ...before.balances[bf.org.B],
      ai: Number(before.balances[bf.org.B].ai) - 1,
      // the unified balance follows (ai_chat costs 1), floored at 0
      credits_remaining: Math.max(0, Number(before.balances[bf.org.B].credits_remaining) - 1),
    });
    expect(after.rows["public.credit_consumption_logs"]).toBe(before.rows["public.credit_consumption_logs"] + 1);
    // The replay for B is B's own result.
    expect(await call(memberB(), `SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, [bf.org.B, key])).toEqual(b);
  });

  it("a key reused with another quantity or action is IDEMPOTENCY_KEY_REUSED: nothing debited, one refusal logged (finding 5)", async () => {
    const key = "order-44";
    const first = await call(service, `SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, [bf.org.A, key]);
    expect(first.success).toBe(true);
    for (const [sql, label] of [
      [`SELECT public.consume_credits_rpc($1, 'ai_chat', 500, $2) AS r`, "a larger quantity"],
      [`SELECT public.consume_credits_rpc($1, 'bulk_email', 1, $2) AS r`, "another action"],
    ]) {
      const before = await state(bf.db);
      const r = await call(service, sql, [bf.org.A, key]);
      expect(r, label).toMatchObject({ success: false, error_code: "IDEMPOTENCY_KEY_REUSED" });
      const after = await state(bf.db);
      expect(after.balances, label).toEqual(before.balances);
      expect(after.rows["public.credit_consumption_logs"], label).toBe(before.rows["public.credit_consumption_logs"] + 1);
      const [last] = await bf.db.query(`SELECT success, error_code, credits_consumed FROM public.credit_consumption_logs ORDER BY id DESC LIMIT 1`);
      expect(last, label).toEqual({ success: false, error_code: "IDEMPOTENCY_KEY_REUSED", credits_consumed: 0 });
    }
    // The original request still replays its first result.
    expect(await call(service, `SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, [bf.org.A, key])).toEqual(first);
  });

  it("a member of B presenting A's key for A gets FORBIDDEN, not A's stored result; nothing changes", async () => {
    const key = "order-43";
    const a = await call(service, `SELECT public.consume_credits_rpc($1, 'ai_chat', 2, $2) AS r`, [bf.org.A, key]);
    expect(a.success).toBe(true);
    const before = await state(bf.db);
    const r = await call(memberB(), `SELECT public.consume_credits_rpc($1, 'ai_chat', 2, $2) AS r`, [bf.org.A, key]);
    expect(r).toMatchObject({ success: false, error_code: "FORBIDDEN", remaining_credits: 0 });
    expect(JSON.stringify(r)).not.toContain(String(a.remaining.ai));
    expect(await state(bf.db)).toEqual(before);
  });
});

describe("concurrency", () => {
  it("32 concurrent callers on one org with 10 credits: exactly 10 succeed, the pool ends at 0, one log row per call, no other org changes", async () => {
    const C = await makeOrg(bf.db, { model: "multi", plan: "starter", totalCredits: 10, creditsRemaining: 10, pools: { ai: 10 } });
    const users = [await makeUser(bf.db, C, "user"), await makeUser(bf.db, C, "admin")];
    const before = await state(bf.db);
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 32; i++) {
        const c = await bf.db.client();
        clients.push(c);
        await c.query("BEGIN");
        await c.query("SELECT set_config('request.jwt.claims', $1, true)", [JSON.stringify({ sub: users[i % 2], role: "authenticated" })]);
        await c.query("SET LOCAL ROLE authenticated");
      }
      // All 32 sessions are ready; fire at once.
      const results = await Promise.all(
        clients.map(async (c, i) => {
          const { rows } = await c.query(`SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, [C, `burst-${i}`]);
          await c.query("COMMIT");
          return rows[0].r;
        }),
      );
      const ok = results.filter((r) => r.success);
      const refused = results.filter((r) => !r.success);
      expect(ok).toHaveLength(10);
      expect(refused).toHaveLength(22);
      expect(new Set(refused.map((r) => r.error_code))).toEqual(new Set(["INSUFFICIENT_CREDITS"]));
      expect(ok.map((r) => r.remaining.ai).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
    const after = await state(bf.db);
    // 10 successes of ai_chat (unified cost 1 each): the unified balance follows, 10 -> 0.
    expect(after.balances[C]).toMatchObject({ ai: 0, whatsapp: 0, email: 0, sms: 0, credits_remaining: 0 });
    const [logs] = await bf.db.query(
      `SELECT count(*) FILTER (WHERE success)::int AS ok, count(*) FILTER (WHERE NOT success)::int AS refused,
              coalesce(sum(ai_consumed) FILTER (WHERE success), 0)::int AS ai
         FROM public.credit_consumption_logs WHERE organization_id = $1`,
      [C],
    );
    expect(logs).toEqual({ ok: 10, refused: 22, ai: 10 });
    for (const o of [bf.org.A, bf.org.B, bf.org.S]) expect(after.balances[o]).toEqual(before.balances[o]);
    expect(after.rows["public.credit_consumption_logs"]).toBe(before.rows["public.credit_consumption_logs"] + 32);
  });
});
