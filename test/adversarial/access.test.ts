/**
 * Adversarial suite (issue 12), access: attacks that must already fail, one test per attack, as Supabase's real roles
 * on a database migrated to multi (./fixture.ts). Each test asserts what was refused AND that nothing changed
 * (test/adversarial/fixture.ts `state`: every row of every credit, audit, catalogue and backup table, and balances).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attempt, battlefield, type Battlefield, refused, session, state, uuid, type Who } from "./fixture";

let bf: Battlefield;
beforeAll(async () => {
  bf = await battlefield("adv_access");
});
afterAll(() => bf?.drop());

const DENIED = /^permission denied for (table|schema|view|function|sequence) \S+$/;
const anon: Who = { role: "anon" };
const service: Who = { role: "service_role" };
const memberA = (): Who => ({ role: "authenticated", sub: bf.user.memberA });
const adminA = (): Who => ({ role: "authenticated", sub: bf.user.adminA });

/** Runs an attack that must be refused by the database; returns its error after checking that nothing changed. */
async function refusedUnchanged(who: Who, sql: string, params: unknown[] = []): Promise<Error & { code?: string }> {
  const before = await state(bf.db);
  const e = await refused(bf.db, who, sql, params);
  expect(await state(bf.db)).toEqual(before);
  return e;
}

/** Runs a call that must come back as a refusal result (success false, error_code); checks nothing changed. */
async function refusedResult(who: Who, sql: string, params: unknown[] = []): Promise<any> {
  const before = await state(bf.db);
  const r = await attempt(bf.db, who, sql, params);
  expect(r.error, String(r.error?.message)).toBeUndefined();
  const res = r.rows![0].r;
  expect(res.success).toBe(false);
  expect(await state(bf.db)).toEqual(before);
  return res;
}

describe("cross-org spending", () => {
  it("a member of A calling consume_credits_rpc for B gets FORBIDDEN; nothing is debited or logged", async () => {
    const res = await refusedResult(memberA(), `SELECT public.consume_credits_rpc($1, 'ai_chat', 5) AS r`, [bf.org.B]);
    expect(res).toMatchObject({ error_code: "FORBIDDEN", remaining_credits: 0 });
  });

  it("an org admin of A calling consume_credits_batch for B gets FORBIDDEN; nothing is debited or logged", async () => {
    const res = await refusedResult(adminA(), `SELECT public.consume_credits_batch($1, '[{"action_type": "ai_chat", "quantity": 3}]'::jsonb) AS r`, [bf.org.B]);
    expect(res.error_code).toBe("FORBIDDEN");
  });

  it("a JWT whose user does not exist (forged sub) gets FORBIDDEN for any org", async () => {
    const res = await refusedResult({ role: "authenticated", sub: uuid() }, `SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [bf.org.A]);
    expect(res.error_code).toBe("FORBIDDEN");
  });

  it("a JWT claiming role service_role while the session is authenticated gets FORBIDDEN for another org", async () => {
    const s = await session(bf.db, memberA());
    const before = await state(bf.db);
    try {
      await s.c.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: bf.user.memberA, role: "service_role" })]);
      const { rows } = await s.c.query(`SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [bf.org.B]);
      expect(rows[0].r.error_code).toBe("FORBIDDEN");
    } finally {
      await s.end(true);
    }
    expect(await state(bf.db)).toEqual(before);
  });

  it("anon cannot call consume_credits_rpc at all", async () => {
    const e = await refusedUnchanged(anon, `SELECT public.consume_credits_rpc($1, 'ai_chat') AS r`, [bf.org.A]);
    expect(e.message).toBe("permission denied for function consume_credits_rpc");
  });
});

describe("direct writes on the credit tables", () => {
  const writes: [string, string][] = [
    ["raise its own pool", `UPDATE public.organization_credits SET ai_credits_available = 1000000 WHERE organization_id = :A`],
    ["raise its own unified balance", `UPDATE public.organization_credits SET credits_remaining = 1000000 WHERE organization_id = :A`],
    ["drain another org", `UPDATE public.organization_credits SET ai_credits_available = 0 WHERE organization_id = :B`],
    [
      "create a credit account",
      `INSERT INTO public.organization_credits (organization_id, plan_name, total_credits, credits_remaining) VALUES (gen_random_uuid(), 'premium', 99999, 99999)`,
    ],
    ["delete another org's account", `DELETE FROM public.organization_credits WHERE organization_id = :B`],
    ["make an action free", `UPDATE public.credit_actions SET credits_cost = 0, ai_credits_required = 0`],
    ["add an action", `INSERT INTO public.credit_actions (action_type, credits_cost) VALUES ('free_lunch', 0)`],
    ["delete the catalogue", `DELETE FROM public.credit_actions`],
    [
      "forge a consumption record",
      `INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success) VALUES (:A, 'ai_chat', 1, 0, true)`,
    ],
    ["rewrite its consumption history", `UPDATE public.credit_consumption_logs SET success = false WHERE organization_id = :A`],
    ["erase its consumption history", `DELETE FROM public.credit_consumption_logs WHERE organization_id = :A`],
    ["truncate the log", `TRUNCATE public.credit_consumption_logs`],
    ["rename its organization", `UPDATE public.organizations SET name = 'pwned' WHERE id = :A`],
  ];
  for (const [label, sql] of writes) {
    for (const who of ["anon", "authenticated"] as const) {
      it(`${who} cannot ${label}`, async () => {
        const text = sql.replace(/:A/g, `'${bf.org.A}'`).replace(/:B/g, `'${bf.org.B}'`);
        if (label === "rename its organization") {
          // organizations keep the application's privileges: row level security filters the row out (only a
          // super_admin updates an organization), so the statement changes nothing rather than failing.
          const before = await state(bf.db);
          const r = await attempt(bf.db, who === "anon" ? anon : memberA(), text);
          expect(r.error, String(r.error?.message)).toBeUndefined();
          expect(await state(bf.db)).toEqual(before);
          return;
        }
        const e = await refusedUnchanged(who === "anon" ? anon : memberA(), text);
        expect(e.code).toBe("42501");
        expect(e.message).toMatch(DENIED);
      });
    }
  }

  for (const [label, sql] of [
    ["rewrite consumption records", `UPDATE public.credit_consumption_logs SET credits_consumed = 0`],
    ["delete consumption records", `DELETE FROM public.credit_consumption_logs`],
    ["truncate the consumption log", `TRUNCATE public.credit_consumption_logs`],
    ["rewrite the migration journal", `UPDATE guardian.migration_journal SET step = 'nothing happened'`],
  ] as const) {
    it(`service_role cannot ${label} (the audit is append-only)`, async () => {
      const e = await refusedUnchanged(service, sql);
      expect(e.code).toBe("42501");
      expect(e.message).toMatch(/^permission denied for (table|schema) \S+$|refused: the audit is append-only$/);
    });
  }
});

describe("escalation through profiles", () => {
  it("a member cannot make their own profile super_admin, and still sees only their own organization", async () => {
    const e = await refusedUnchanged(memberA(), `UPDATE public.profiles SET role = 'super_admin' WHERE id = $1`, [bf.user.memberA]);
    expect(e.code).toBe("42501");
    expect(e.message).toBe("permission denied: the organization and the role of a profile are changed by the backend or a super_admin");
    const seen = await attempt(bf.db, memberA(), `SELECT organization_id::text AS o FROM public.organization_credits ORDER BY 1`);
    expect(seen.rows!.map((r) => r.o)).toEqual([bf.org.A]);
    const [{ is_admin }] = (await attempt(bf.db, memberA(), `SELECT guardian_rls.is_super_admin() AS is_admin`)).rows!;
    expect(is_admin).toBe(false);
  });

  it("a member cannot move their profile to another organization", async () => {
    const e = await refusedUnchanged(memberA(), `UPDATE public.profiles SET organization_id = $2 WHERE id = $1`, [bf.user.memberA, bf.org.B]);
    expect(e.code).toBe("42501");
    expect(e.message).toBe("permission denied: the organization and the role of a profile are changed by the backend or a super_admin");
  });

  it("a signed-up user cannot create a profile in someone else's organization", async () => {
    const newcomer = uuid();
    await bf.db.query(`INSERT INTO auth.users (id) VALUES ($1)`, [newcomer]);
    const e = await refusedUnchanged(
      { role: "authenticated", sub: newcomer },
      `INSERT INTO public.profiles (id, organization_id, role) VALUES ($1, $2, 'super_admin')`,
      [newcomer, bf.org.B],
    );
    expect(e.code).toBe("42501");
    expect(e.message).toBe('new row violates row-level security policy for table "profiles"');
  });
});

describe("internal functions", () => {
  /** Every function of schema guardian, with a call that passes NULLs of its argument types. */
  async function guardianFunctions(): Promise<{ signature: string; call: string; definer: boolean }[]> {
    const rows = await bf.db.query(
      `SELECT p.oid::regprocedure::text AS signature, p.prosecdef AS definer, p.prorettype = 'trigger'::regtype AS trigger,
              format('SELECT %s(%s)', p.oid::regproc, coalesce((SELECT string_agg(format('NULL::%s', t::regtype), ', ' ORDER BY i)
                                                                 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, i)), '')) AS call
         FROM pg_proc p WHERE p.pronamespace = 'guardian'::regnamespace ORDER BY 1`,
    );
    return rows;
  }

  it("anon and authenticated can execute no function of schema guardian", async () => {
    const fns = await guardianFunctions();
    expect(fns.map((f) => f.signature)).toEqual(
      expect.arrayContaining(["guardian.may_consume_for(uuid)", "guardian.erase_user(uuid)", "guardian.purge_audit(interval)"]),
    );
    for (const who of [anon, memberA(), { role: "authenticated" as const, sub: bf.user.superAdmin }]) {
      for (const f of fns) {
        const e = await refusedUnchanged(who, f.call);
        expect(e.message, `${who.role} ${f.signature}`).toBe("permission denied for schema guardian");
      }
    }
  });

  it("service_role can execute only the audit's two exits (erase_user, purge_audit) in schema guardian, and one pure helper", async () => {
    const exits = ["guardian.erase_user(uuid)", "guardian.purge_audit(interval)"];
    // The journal's personal-data check: SECURITY INVOKER and IMMUTABLE, it reads nothing and runs with the caller's
    // own privileges (the journal's trigger calls it as the writer), so calling it gives service_role nothing.
    const pure = ["guardian.audit_personal_data_at(jsonb,text)"];
    for (const f of await guardianFunctions()) {
      if (exits.includes(f.signature)) continue;
      if (pure.includes(f.signature)) {
        expect(f.definer, f.signature).toBe(false);
        const before = await state(bf.db);
        const r = await attempt(bf.db, service, `SELECT guardian.audit_personal_data_at('{"email": "x"}'::jsonb, 'details') AS r`);
        expect(r.rows?.[0].r).toBe("details.email (a personal-data key)");
        expect(await state(bf.db)).toEqual(before);
        continue;
      }
      const e = await refusedUnchanged(service, f.call);
      expect(e.message, f.signature).toMatch(/^permission denied for function \S+$/);
    }
  });

  it("nobody but the owner reads the erasure key", async () => {
    for (const who of [anon, memberA(), service]) {
      const e = await refusedUnchanged(who, `SELECT key FROM guardian.erasure_key`);
      expect(e.message).toMatch(/^permission denied for (schema guardian|table erasure_key)$/);
    }
  });
});

describe("backup schemas and operator views", () => {
  for (const who of ["anon", "authenticated", "service_role"] as const) {
    it(`${who} cannot read a backup schema (guardian_backup_*)`, async () => {
      const w = who === "anon" ? anon : who === "service_role" ? service : memberA();
      for (const t of ["organizations", "organization_credits", "credit_actions", "credit_consumption_logs"]) {
        const e = await refusedUnchanged(w, `SELECT * FROM ${bf.backupId}.${t}`);
        expect(e.message).toBe(`permission denied for schema ${bf.backupId}`);
      }
      const e = await refusedUnchanged(w, `SELECT * FROM guardian.backups`);
      expect(e.message).toMatch(/^permission denied for (schema guardian|table backups)$/);
    });
  }

  for (const view of ["plan_margins", "action_margins"]) {
    for (const who of ["anon", "authenticated"] as const) {
      it(`${who} cannot read ${view}`, async () => {
        const e = await refusedUnchanged(who === "anon" ? anon : { role: "authenticated", sub: bf.user.superAdmin }, `SELECT * FROM public.${view}`);
        expect(e.message).toBe(`permission denied for view ${view}`);
      });
    }
  }
});

describe("code as the owner through a trigger (issue 22, finding 3, and its variants)", () => {
  /** Every table of schemas public and guardian: those the SECURITY DEFINER functions read or write, and the rest. */
  async function tables(): Promise<string[]> {
    return (
      await bf.db.query(`SELECT c.oid::regclass::text AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname IN ('public', 'guardian') AND c.relkind IN ('r', 'p') ORDER BY 1`)
    ).map((r: any) => r.t);
  }

  it("service_role, with Supabase's ALL on public's tables and CREATE on public, creates no trigger on any table of public or guardian", async () => {
    // The trigger function itself can be made (CREATE on public, ./fixture.ts); a trigger on the program's tables
    // cannot: it would run inside the SECURITY DEFINER functions as their owner.
    const ts = await tables();
    expect(ts).toEqual(expect.arrayContaining(["organization_credits", "credit_consumption_logs", "guardian.allocations", "guardian.idempotency_keys"]));
    for (const t of ts) {
      const e = await refusedUnchanged(
        service,
        `CREATE FUNCTION public.zz_forge() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER zz_forge BEFORE INSERT OR UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION public.zz_forge()`,
      );
      expect(e.message, t).toMatch(/^permission denied for (table|schema) \S+$/);
    }
  });

  it("no one but the owner truncates a table of public or guardian", async () => {
    for (const t of await tables()) {
      for (const who of [anon, memberA(), service]) {
        const e = await refusedUnchanged(who, `TRUNCATE ${t}`);
        expect(e.message, `${who.role} ${t}`).toMatch(/^permission denied for (table|schema) \S+$/);
      }
    }
  });
});
