/**
 * The access matrix, found by acting as the application's roles (contract: "The application around the credits keeps
 * working"): for each table the program touches, each role, each command (UPDATE of profiles split into the tenancy
 * columns and the rest) and each row scope, whether the database lets that role do it.
 *
 * Nothing is written, ever: each role acts in a READ ONLY transaction that is rolled back. Reads are real reads as the
 * role. Writes are evaluated without writing, as Postgres would decide them: the role's table (or column) privilege,
 * then, where row level security applies to the role, the policies for that command that name the role (permissive
 * ones OR-ed, restrictive ones AND-ed), USING evaluated as the role on the real target row (which must also be visible
 * to it, as an UPDATE or DELETE with a WHERE needs) and WITH CHECK (USING when a policy has none) on the row the write
 * would produce; and, for the tenancy columns of profiles, the program's own guard trigger
 * (sql/tenancy/02_profiles_guard.sql) as it decides. Other triggers are not run: a CRM trigger that would refuse a
 * write is not seen here (the matrix then shows more than the database allows, never less).
 */
import type { Client } from "pg";
import { errorCode, errorMessage } from "./errors";
import { actAs, rolledBack } from "./db";

export const ACCESS_ROLES = ["anon", "member", "org_admin", "super_admin", "no_profile", "service_role"] as const;
export type AccessRole = (typeof ACCESS_ROLES)[number];

export type Command = "SELECT" | "INSERT" | "UPDATE" | "UPDATE tenancy" | "DELETE";
/** own: its own row (profile) or its organization's row; team: a teammate's profile; other: another organization's;
 * elevated: its own new profile naming an organization and the role admin; new: a row nobody has; all: a shared table. */
export type Scope = "own" | "team" | "other" | "elevated" | "new" | "all";

export interface CellKey {
  table: string;
  command: Command;
  scope: Scope;
}

export interface Cell extends CellKey {
  role: AccessRole;
  allowed: boolean;
  /** The role's table privilege for the command (column privilege for UPDATE), as found. */
  privilege: boolean;
  /** Why it is denied (privilege, policy, guard trigger), for the reader. */
  why?: string;
}

export interface AccessMatrix {
  /** Roles that could be played on this database (a role with no such user in the data is left out). */
  roles: AccessRole[];
  cells: Cell[];
}

/** The cells probed per table: commands by scope. */
export const PROBES: readonly CellKey[] = [
  ...(["own", "other"] as const).flatMap((scope) =>
    (["SELECT", "UPDATE", "DELETE"] as const).map((command) => ({ table: "organizations", command, scope }) as CellKey),
  ),
  { table: "organizations", command: "INSERT", scope: "new" },
  ...(["own", "team", "other"] as const).flatMap((scope) =>
    (["SELECT", "UPDATE", "UPDATE tenancy", "DELETE"] as const).map((command) => ({ table: "profiles", command, scope }) as CellKey),
  ),
  { table: "profiles", command: "INSERT", scope: "own" },
  { table: "profiles", command: "INSERT", scope: "elevated" },
  { table: "profiles", command: "INSERT", scope: "other" },
  ...["organization_credits", "credit_consumption_logs"].flatMap((table) =>
    (["own", "other"] as const).flatMap((scope) =>
      (["SELECT", "INSERT", "UPDATE", "DELETE"] as const).map((command) => ({ table, command, scope }) as CellKey),
    ),
  ),
  ...(["SELECT", "INSERT", "UPDATE", "DELETE"] as const).map((command) => ({ table: "credit_actions", command, scope: "all" }) as CellKey),
];

export function cellName(k: CellKey): string {
  return `${k.command} ${k.table} (${k.scope})`;
}

interface Actor {
  role: AccessRole;
  dbRole: "anon" | "authenticated" | "service_role";
  sub?: string;
  org?: string | null;
}

const KEY: Record<string, string> = {
  organizations: "id",
  profiles: "id",
  organization_credits: "organization_id",
  credit_consumption_logs: "id",
  credit_actions: "action_type",
};
const IDENT = /^[a-z_][a-z0-9_]*$/;

/**
 * Probes the matrix on the database `c` is connected to (as a role that may SET ROLE to anon, authenticated and
 * service_role). `roleColumn`: the profile column holding user / admin / super_admin.
 * `write`: for a scratch copy only (a test database, a rehearsal): each write is really made, as the role, in a
 * savepoint rolled back at once, and its outcome is the cell (an integrity error, such as a duplicate key or a
 * foreign key, means the role was let through); triggers fire. Tests compare the two modes cell by cell.
 */
export async function probeAccess(c: Pick<Client, "query">, roleColumn: string, opts: { write?: boolean } = {}): Promise<AccessMatrix> {
  if (!IDENT.test(roleColumn)) throw new Error(`access matrix: profile role column "${roleColumn}" is not a plain identifier`);
  const one = async (sql: string, params: unknown[] = []) => (await c.query(sql, params)).rows[0] as Record<string, any> | undefined;
  const roles = new Set((await c.query(`SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role')`)).rows.map((r) => r.rolname));

  // The players, from the data: a member with a teammate where there is one, an organization admin, a super_admin.
  // (Bounded reads: a few hundred candidates, not a scan of every profile of a large CRM.)
  const member = await one(
    `WITH cand AS (SELECT p.id, p.organization_id FROM public.profiles p
                    WHERE p.organization_id IS NOT NULL AND coalesce(p.${roleColumn}::text, 'user') NOT IN ('admin', 'super_admin')
                    LIMIT 200)
     SELECT cand.id::text AS id, cand.organization_id::text AS org FROM cand
      ORDER BY EXISTS (SELECT 1 FROM public.profiles q WHERE q.organization_id = cand.organization_id AND q.id <> cand.id) DESC, cand.id LIMIT 1`,
  );
  const admin = await one(
    `SELECT p.id::text AS id, p.organization_id::text AS org FROM public.profiles p
      WHERE p.organization_id IS NOT NULL AND p.${roleColumn}::text = 'admin' ORDER BY p.id LIMIT 1`,
  );
  const sa = await one(
    `SELECT p.id::text AS id, p.organization_id::text AS org FROM public.profiles p WHERE p.${roleColumn}::text = 'super_admin' ORDER BY p.id LIMIT 1`,
  );
  const lone = await one(
    `SELECT u.id::text AS id FROM auth.users u WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = u.id) ORDER BY u.id LIMIT 1`,
  );
  const actors: Actor[] = [];
  if (roles.has("anon")) actors.push({ role: "anon", dbRole: "anon" });
  if (roles.has("authenticated")) {
    if (member) actors.push({ role: "member", dbRole: "authenticated", sub: member.id, org: member.org });
    if (admin) actors.push({ role: "org_admin", dbRole: "authenticated", sub: admin.id, org: admin.org });
    if (sa) actors.push({ role: "super_admin", dbRole: "authenticated", sub: sa.id, org: sa.org });
    actors.push({ role: "no_profile", dbRole: "authenticated", sub: lone?.id ?? "00000000-0000-4000-8000-0000000000ab", org: null });
  }
  if (roles.has("service_role")) actors.push({ role: "service_role", dbRole: "service_role", org: member?.org ?? null });

  const columns = new Map<string, { name: string; type: string; insertable: boolean }[]>();
  for (const t of Object.keys(KEY)) {
    columns.set(
      t,
      (
        await c.query(
          `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated = '' AND a.attidentity <> 'a' AS insertable
             FROM pg_attribute a
            WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
          [`public.${t}`],
        )
      ).rows,
    );
  }
  const has = (t: string, col: string) => (columns.get(t) ?? []).some((x) => x.name === col);
  // An UPDATE of "the rest" of a profile changes one ordinary column: full_name where there is one.
  const otherColumn = (t: string) =>
    (t === "profiles" && has(t, "full_name") ? "full_name" : undefined) ??
    (columns.get(t) ?? []).map((x) => x.name).find((n) => ![KEY[t], "organization_id", roleColumn, "id"].includes(n)) ??
    KEY[t];

  const rowOf = async (table: string, where: string, params: unknown[]) =>
    (await one(`SELECT to_jsonb(t) AS row FROM public.${table} t WHERE ${where} LIMIT 1`, params))?.row as Record<string, unknown> | undefined;
  const otherOrgOf = async (org: string | null | undefined) =>
    (
      (await one(
        `SELECT o.id::text AS id FROM public.organization_credits oc JOIN public.organizations o ON o.id = oc.organization_id
        WHERE o.id IS DISTINCT FROM $1::uuid LIMIT 1`,
        [org ?? null],
      )) ?? (await one(`SELECT id::text AS id FROM public.organizations WHERE id IS DISTINCT FROM $1::uuid LIMIT 1`, [org ?? null]))
    )?.id as string | undefined;

  const policies = async (table: string, command: string) =>
    (
      await c.query(
        `SELECT pol.polpermissive AS permissive, pg_get_expr(pol.polqual, pol.polrelid) AS using,
                pg_get_expr(pol.polwithcheck, pol.polrelid) AS check
           FROM pg_policy pol
          WHERE pol.polrelid = $1::regclass AND pol.polcmd IN ($2, '*')
            AND (0 = ANY (pol.polroles) OR EXISTS (SELECT 1 FROM unnest(pol.polroles) r WHERE pg_has_role(current_user, r, 'member')))`,
        [`public.${table}`, { SELECT: "r", INSERT: "a", UPDATE: "w", DELETE: "d" }[command]],
      )
    ).rows as { permissive: boolean; using: string | null; check: string | null }[];

  // Whether row level security is on, per table: read once, as the connecting role.
  const rlsOn = new Map<string, boolean>();
  for (const t of Object.keys(KEY)) rlsOn.set(t, (await one(`SELECT relrowsecurity AS r FROM pg_class WHERE oid = $1::regclass`, [`public.${t}`]))?.r === true);

  const cells: Cell[] = [];
  for (const actor of actors) {
    const otherOrg = await otherOrgOf(actor.org);
    const ownOrg = actor.org ?? null;
    // Target rows, read as the connecting role before acting.
    const targets: Record<string, Partial<Record<Scope, Record<string, unknown> | undefined>>> = {};
    const teammate = actor.sub && ownOrg ? await rowOf("profiles", `t.organization_id = $1::uuid AND t.id <> $2::uuid`, [ownOrg, actor.sub]) : undefined;
    const anyProfile = await rowOf("profiles", "true", []);
    targets.profiles = {
      own: actor.sub ? await rowOf("profiles", "t.id = $1::uuid", [actor.sub]) : undefined,
      team: teammate,
      other: otherOrg ? await rowOf("profiles", "t.organization_id = $1::uuid", [otherOrg]) : undefined,
    };
    if (anyProfile) {
      const fresh = { ...anyProfile, id: actor.sub ?? "00000000-0000-4000-8000-0000000000ae", organization_id: null, [roleColumn]: "user" };
      (targets as any).profilesInsert = {
        own: fresh,
        elevated: { ...fresh, organization_id: ownOrg ?? otherOrg ?? null, [roleColumn]: "admin" },
        other: { ...fresh, id: "00000000-0000-4000-8000-0000000000ac" },
      };
    }
    for (const t of ["organizations", "organization_credits", "credit_consumption_logs"]) {
      const col = t === "organizations" ? "id" : "organization_id";
      targets[t] = {
        own: ownOrg ? await rowOf(t, `t.${col} = $1::uuid`, [ownOrg]) : undefined,
        other: otherOrg ? await rowOf(t, `t.${col} = $1::uuid`, [otherOrg]) : undefined,
      };
    }
    const anyOrg = await rowOf("organizations", "true", []);
    if (anyOrg) targets.organizations.new = { ...anyOrg, id: "00000000-0000-4000-8000-0000000000ad" };
    targets.credit_actions = { all: await rowOf("credit_actions", "true", []) };

    await rolledBack(
      c,
      async () => {
        await actAs(c, { role: actor.dbRole, sub: actor.sub });
        const bypass = (await one(`SELECT rolbypassrls AS b FROM pg_roles WHERE rolname = current_user`))?.b === true;
        const guarded =
          (
            await one(
              `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.profiles'::regclass AND tgname = 'guardian_guard_profile_tenancy' AND tgenabled <> 'D') AS g`,
            )
          )?.g === true;
        // Each probe in a savepoint that is always rolled back: a write made on a scratch copy never lasts into the
        // next probe (nor does anything an expression did).
        const tried = async <T>(f: () => Promise<T>): Promise<T | Error> => {
          await c.query("SAVEPOINT probe");
          try {
            return await f();
          } catch (e) {
            return e instanceof Error ? e : new Error(String(e));
          } finally {
            await c.query("ROLLBACK TO SAVEPOINT probe");
            await c.query("RELEASE SAVEPOINT probe");
          }
        };
        for (const k of PROBES) {
          const t = k.table;
          const rls = rlsOn.get(t) === true && !bypass;
          const isInsert = k.command === "INSERT";
          const target = isInsert
            ? t === "profiles"
              ? (targets as any).profilesInsert?.[k.scope]
              : t === "organizations"
                ? targets[t].new
                : undefined
            : targets[t]?.[k.scope];
          // Rows to insert into the credit tables and the price list: a copy of a row there, for the scope's organization.
          let newRow: Record<string, unknown> | undefined = target;
          if (isInsert && (t === "organization_credits" || t === "credit_consumption_logs")) {
            const base = targets[t].own ?? targets[t].other;
            const org = k.scope === "own" ? ownOrg : otherOrg;
            newRow = base && org ? { ...base, organization_id: org } : undefined;
          }
          if (isInsert && t === "credit_actions")
            newRow = targets.credit_actions.all ? { ...targets.credit_actions.all, action_type: "guardian_probe_action" } : undefined;
          if (!isInsert && t === "credit_actions") newRow = targets.credit_actions.all;
          if ((isInsert && !newRow) || (!isInsert && !target)) continue; // nothing to probe with: no such row in the data
          const cmd = k.command === "UPDATE tenancy" ? "UPDATE" : k.command;
          const cols =
            k.command === "UPDATE tenancy" ? ["organization_id", ...(has(t, roleColumn) ? [roleColumn] : [])] : k.command === "UPDATE" ? [otherColumn(t)] : [];
          const privilege =
            cmd === "UPDATE"
              ? (
                  await one(`SELECT bool_and(has_column_privilege(current_user, $1::regclass, c, 'UPDATE')) AS p FROM unnest($2::text[]) c`, [
                    `public.${t}`,
                    cols,
                  ])
                )?.p === true
              : (await one(`SELECT has_table_privilege(current_user, $1::regclass, $2) AS p`, [`public.${t}`, cmd]))?.p === true;
          const cell: Cell = { ...k, role: actor.role, allowed: false, privilege };
          cells.push(cell);
          if (!privilege) {
            cell.why = `no ${cmd} privilege`;
            continue;
          }
          if (cmd === "SELECT") {
            const r = await tried(() => one(`SELECT EXISTS (SELECT 1 FROM public.${t} WHERE ${KEY[t]} = $1) AS v`, [(target as any)[KEY[t]]]));
            cell.allowed = !(r instanceof Error) && r?.v === true;
            if (!cell.allowed) cell.why = r instanceof Error ? errorMessage(r) : "not visible (row level security)";
            continue;
          }
          if (opts.write) {
            const key = (target as Record<string, unknown> | undefined)?.[KEY[t]];
            const q = (n: string) => `"${n.replace(/"/g, '""')}"`;
            const ins = (columns.get(t) ?? []).filter((x) => x.insertable).map((x) => q(x.name));
            const [sql, params] =
              cmd === "INSERT"
                ? [`INSERT INTO public.${t} (${ins.join(", ")}) SELECT ${ins.join(", ")} FROM jsonb_populate_record(NULL::public.${t}, $1)`, [newRow]]
                : cmd === "DELETE"
                  ? [`DELETE FROM public.${t} WHERE ${KEY[t]} = $1`, [key]]
                  : k.command === "UPDATE tenancy"
                    ? [
                        `UPDATE public.${t} SET organization_id = $2${has(t, roleColumn) ? `, ${roleColumn} = 'super_admin'` : ""} WHERE ${KEY[t]} = $1`,
                        [key, otherOrg ?? null],
                      ]
                    : [`UPDATE public.${t} SET ${q(otherColumn(t))} = ${q(otherColumn(t))} WHERE ${KEY[t]} = $1`, [key]];
            const r = await tried(() => c.query(sql, params));
            cell.allowed = r instanceof Error ? /^23/.test(errorCode(r) ?? "") : (r.rowCount ?? 0) > 0;
            if (!cell.allowed) cell.why = r instanceof Error ? errorMessage(r) : "no row reached (row level security)";
            continue;
          }
          if (!rls) {
            cell.allowed = true;
            continue;
          }
          const pols = await policies(t, cmd);
          const permissive = pols.filter((p) => p.permissive);
          const restrictive = pols.filter((p) => !p.permissive);
          if (permissive.length === 0) {
            cell.why = `no ${cmd} policy for the role`;
            continue;
          }
          const expr = (ps: typeof pols, which: "using" | "check", join: string) =>
            ps.map((p) => `(${(which === "check" ? (p.check ?? p.using) : p.using) ?? "true"})`).join(join) || "true";
          let ok = true;
          if (cmd === "UPDATE" || cmd === "DELETE") {
            const r = await tried(() =>
              one(
                `SELECT EXISTS (SELECT 1 FROM public.${t} AS ${t} WHERE ${KEY[t]} = $1 AND (${expr(permissive, "using", " OR ")}) AND (${expr(restrictive, "using", " AND ")})) AS v`,
                [(target as any)[KEY[t]]],
              ),
            );
            ok = !(r instanceof Error) && r?.v === true;
            if (!ok) cell.why = r instanceof Error ? errorMessage(r) : "row not reachable under the role's policies";
          }
          if (ok && (cmd === "UPDATE" || cmd === "INSERT")) {
            let row = { ...(newRow as Record<string, unknown>) };
            if (k.command === "UPDATE tenancy")
              row = { ...row, organization_id: otherOrg ?? null, ...(has(t, roleColumn) ? { [roleColumn]: "super_admin" } : {}) };
            const r = await tried(() =>
              one(
                `SELECT (${expr(permissive, "check", " OR ")}) AND (${expr(restrictive, "check", " AND ")}) AS v FROM jsonb_populate_record(NULL::public.${t}, $1) AS ${t}`,
                [row],
              ),
            );
            ok = !(r instanceof Error) && r?.v === true;
            if (!ok) cell.why = r instanceof Error ? errorMessage(r) : "the new row fails the role's WITH CHECK";
          }
          if (ok && k.command === "UPDATE tenancy" && guarded && actor.dbRole !== "service_role") {
            const r = await tried(() => one(`SELECT guardian_rls.is_super_admin() AS v`));
            ok = !(r instanceof Error) && r?.v === true;
            if (!ok) cell.why = "refused by the guard trigger on the tenancy columns";
          }
          cell.allowed = ok;
        }
      },
      opts.write ? "BEGIN" : "BEGIN READ ONLY",
    );
  }
  return { roles: actors.map((a) => a.role), cells };
}

/** One line per cell, for reports: "member UPDATE profiles (own): allowed". */
export function matrixLines(m: AccessMatrix): string[] {
  return m.cells.map((x) => `${x.role} ${cellName(x)}: ${x.allowed ? "allowed" : "denied"}`);
}
