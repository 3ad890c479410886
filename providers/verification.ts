/**
 * Verification: facts computed from the database after the other steps, and invariants that fail the update.
 *
 *   create  runs the verification SQL (a pg_temp function: nothing persists); calls the installed consume_credits_rpc
 *           (and consume_credits_batch) for real, as service_role and as a member, in a transaction it rolls back
 *           (sql/functions/trial_calls.sql): a call that errors is a violation; and tests tenant isolation as real
 *           users sampled from profiles (a member, a user without a profile, a super_admin) and as anon, on every
 *           guarded table: a row of another organization seen by anyone but a super_admin is a violation. Journals
 *           the outcome, and fails with a message naming the organizations or the table when an invariant is
 *           violated. The facts (with the isolation matrix) become outputs.
 *   read    keeps the recorded facts (verification is a point-in-time statement, re-made on every change upstream), and
 *           re-checks what must hold at any time: the trial calls and tenant isolation. When either fails now, the
 *           state records it (liveCheck), so `pulumi up --refresh` re-verifies and fails instead of passing.
 *   diff    an update when what it verifies changed: the SQL, the model, or any upstream fingerprint.
 *   update  as create.
 *   delete  nothing to remove.
 */
import * as pulumi from "@pulumi/pulumi";

export interface VerificationArgs {
  databaseUrl: pulumi.Input<string>;
  model: pulumi.Input<"unified" | "multi">;
  sql: pulumi.Input<string>;
  sqlSha256: pulumi.Input<string>;
  /** sql/functions/trial_calls.sql: the installed functions called for real, rolled back. */
  trialCallsSql: pulumi.Input<string>;
  /** The column of public.profiles holding super_admin (the database's shape). */
  profileRoleColumn: pulumi.Input<string>;
  /** The guarded tables and their organization column (null: shared by every tenant). */
  isolationTables: pulumi.Input<{ table: string; orgColumn: string | null }[]>;
  /** Fingerprints of what this verifies (functions, backfill run, policies...): a change re-runs verification. */
  upstream: pulumi.Input<Record<string, pulumi.Input<string | number | boolean | undefined>>>;
}

async function verify(inputs: any): Promise<any> {
  const { Client } = require("pg");
  const c = new Client({ connectionString: inputs.databaseUrl, application_name: "guardian-credits:verification" });
  await c.connect();
  try {
    await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await c.query(inputs.sql);
    const r = (await c.query("SELECT pg_temp.guardian_verify() AS v")).rows[0].v;
    await c.query("COMMIT");
    const violations: string[] = r.violations ?? [];
    const facts: Record<string, any> = r.facts ?? {};

    // The installed functions, called as the application and a member call them (rolled back).
    await c.query("BEGIN");
    try {
      await c.query(inputs.trialCallsSql);
      facts.trialCalls = "every call answered";
    } catch (e: any) {
      facts.trialCalls = `failed: ${e.message}`;
      violations.push(`consume_credits_rpc: ${e.message}`);
    } finally {
      await c.query("ROLLBACK").catch(() => undefined);
    }

    // Tenant isolation, as real users (and anon), on every guarded table.
    const iso = await isolationMatrix(c, inputs.profileRoleColumn, inputs.isolationTables);
    facts.isolation = iso.matrix;
    violations.push(...iso.violations);
    await c.query(
      `DO $j$ BEGIN IF to_regclass('guardian.migration_journal') IS NOT NULL THEN
         INSERT INTO guardian.migration_journal (step, object_name, details)
         VALUES ('verification', '${inputs.model}', jsonb_build_object('violations', ${Number(violations.length)}));
       END IF; END $j$`,
    );
    for (const [k, v] of Object.entries(facts)) console.log(`verification (${inputs.model}): ${k} = ${JSON.stringify(v)}`);
    if (violations.length) {
      throw new Error(`verification of the ${inputs.model} model FAILED (${violations.length} invariant(s) violated):\n  - ${violations.join("\n  - ")}`);
    }
    return { ...inputs, facts, violations, liveCheck: "ok", verifiedAt: new Date().toISOString() };
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Who is sampled, as Supabase identifies them: the role in effect and request.jwt.claims. */
interface Subject {
  name: string;
  role: "anon" | "authenticated";
  sub?: string;
  org?: string | null;
}

/**
 * For each subject and guarded table: how many rows it sees (capped) and how many belong to another organization
 * than its own. A member or a user without a profile seeing another organization's row, or anon seeing any row, is a
 * violation; a super_admin's rows are reported (it reads all by design).
 */
async function isolationMatrix(c: any, roleColumn: string, tables: { table: string; orgColumn: string | null }[]) {
  const CAP = 10000;
  const violations: string[] = [];
  if (!/^[a-z_][a-z0-9_]*$/.test(roleColumn)) throw new Error(`verification: profile role column "${roleColumn}" is not a plain identifier`);
  const subjects: Subject[] = [{ name: "anon", role: "anon" }];
  const members = (await c.query(
    `SELECT DISTINCT ON (p.organization_id) p.id::text AS id, p.organization_id::text AS org
       FROM public.profiles p
      WHERE p.organization_id IS NOT NULL AND p.${roleColumn} IS DISTINCT FROM 'super_admin'
      ORDER BY p.organization_id, p.id LIMIT 2`)).rows;
  members.forEach((m: any, i: number) => subjects.push({ name: `member${i + 1}`, role: "authenticated", sub: m.id, org: m.org }));
  const admin = (await c.query(
    `SELECT p.id::text AS id, p.organization_id::text AS org FROM public.profiles p WHERE p.${roleColumn} = 'super_admin' ORDER BY p.id LIMIT 1`)).rows[0];
  if (admin) subjects.push({ name: "super_admin", role: "authenticated", sub: admin.id, org: admin.org });
  // A signed-in user with no profile: an auth user without one if there is such a user, else an id nobody has.
  const lone = (await c.query(
    `SELECT u.id::text AS id FROM auth.users u WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = u.id) ORDER BY u.id LIMIT 1`)).rows[0];
  subjects.push({ name: "no_profile", role: "authenticated", sub: lone?.id ?? "00000000-0000-4000-8000-0000000000aa", org: null });

  const matrix: Record<string, any> = { subjects: Object.fromEntries(subjects.map((s) => [s.name, { role: s.role, user: s.sub ?? null, organization: s.org ?? null }])), tables: {} };
  for (const t of tables) {
    const row: Record<string, any> = {};
    for (const s of subjects) {
      await c.query("BEGIN");
      try {
        await c.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify(s.sub ? { sub: s.sub, role: s.role } : { role: s.role })]);
        await c.query(`SET LOCAL ROLE ${s.role}`);
        const visible = Number((await c.query(`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${t.table} LIMIT ${CAP}) x`)).rows[0].n);
        const other = t.orgColumn
          ? Number((await c.query(
            `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${t.table} WHERE ${t.orgColumn} IS DISTINCT FROM $1::uuid LIMIT ${CAP}) x`, [s.org ?? null])).rows[0].n)
          : null;
        row[s.name] = { visible, otherOrganizations: other };
        const leak = s.name !== "super_admin" && ((s.role === "anon" && visible > 0) || (other !== null && other > 0) ||
          (s.name === "no_profile" && visible > 0));
        if (leak) {
          violations.push(`tenant isolation: ${s.name} (${s.role}${s.sub ? ` ${s.sub}` : ""}) reads ${t.orgColumn ? `${other} row(s) of other organizations` : `${visible} row(s)`} of ${t.table}`);
        }
      } catch (e: any) {
        if (e.code === "42501" && /permission denied for (table|relation|schema)/.test(e.message)) row[s.name] = { visible: 0, otherOrganizations: 0, denied: true };
        else {
          row[s.name] = { error: e.message };
          violations.push(`tenant isolation: could not read ${t.table} as ${s.name}: ${e.message}`);
        }
      } finally {
        await c.query("ROLLBACK").catch(() => undefined);
      }
    }
    matrix.tables[t.table] = row;
  }
  return { matrix, violations };
}

export const verificationProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: any, news: any) {
    const changed: string[] = [];
    if (olds.model !== news.model) changed.push("model");
    if (olds.sqlSha256 !== news.sqlSha256 || olds.trialCallsSql !== news.trialCallsSql) changed.push("sql");
    if (JSON.stringify(olds.upstream ?? {}) !== JSON.stringify(news.upstream ?? {})) changed.push("upstream");
    if (olds.databaseUrl !== news.databaseUrl) changed.push("databaseUrl"); // re-verified with the new credential
    if (olds.liveCheck && olds.liveCheck !== "ok") changed.push("liveCheck"); // a refresh found calls or isolation failing
    return { changes: changed.length > 0, replaces: [], detailedDiff: Object.fromEntries(changed.map((k) => [k, { kind: "update", inputDiff: true }])) as any };
  },
  async create(inputs: any) {
    return { id: `verification:${inputs.model}`, outs: await verify(inputs) };
  },
  async update(_id: string, _olds: any, news: any) {
    return { outs: await verify(news) };
  },
  async read(id: string, props: any) {
    if (!props?.trialCallsSql) return { id, props };
    const { Client } = require("pg");
    const c = new Client({ connectionString: props.databaseUrl, application_name: "guardian-credits:verification" });
    let liveCheck = "ok";
    try {
      await c.connect();
      await c.query("BEGIN");
      try {
        await c.query(props.trialCallsSql);
      } finally {
        await c.query("ROLLBACK").catch(() => undefined);
      }
      const iso = await isolationMatrix(c, props.profileRoleColumn, props.isolationTables ?? []);
      if (iso.violations.length) liveCheck = `failed: ${iso.violations.join("; ")}`;
    } catch (e: any) {
      liveCheck = `failed: ${e.message}`;
    } finally {
      await c.end().catch(() => undefined);
    }
    return { id, props: { ...props, liveCheck } };
  },
  async delete() {},
};

/** Type token: pulumi-nodejs:dynamic/guardian:Verification. */
export class VerificationRun extends pulumi.dynamic.Resource {
  declare readonly facts: pulumi.Output<Record<string, any>>;
  declare readonly violations: pulumi.Output<string[]>;
  declare readonly verifiedAt: pulumi.Output<string>;

  constructor(name: string, args: VerificationArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      verificationProvider,
      name,
      { ...args, databaseUrl: pulumi.secret(args.databaseUrl), facts: undefined, violations: undefined, verifiedAt: undefined },
      { ...opts, additionalSecretOutputs: ["databaseUrl"] },
      "guardian",
      "Verification",
    );
  }
}
