/**
 * Tenant isolation as real users see it: subjects sampled from the database (members of two organizations, a
 * super_admin, a signed-in user without a profile) and anon, each acting as Supabase makes them act (SET ROLE and
 * request.jwt.claims), in a transaction rolled back per table. Used by the verification (providers/verification.ts),
 * which fails on a violation, and by the report, which shows the matrix.
 */
import type { Client } from "pg";
import { TENANT_TABLES } from "./tenantTables";
import { errorCode, errorMessage } from "./errors";
import { actAs, rolledBack } from "./db";

/** The guarded tables the Data API reaches (schema public), with the column naming the owning organization. */
export const ISOLATION_TABLES = TENANT_TABLES.filter((t) => t.table.startsWith("public.")).map((t) => ({ table: t.table, orgColumn: t.orgColumn }));

export interface IsolationMatrix {
  subjects: Record<string, { role: string; user: string | null; organization: string | null }>;
  /** Per table, per subject: rows seen (capped at 10,000) and rows of other organizations among them. */
  tables: Record<string, Record<string, { visible?: number; otherOrganizations?: number | null; denied?: boolean; error?: string }>>;
}

/** Who is sampled, as Supabase identifies them: the role in effect and request.jwt.claims. */
export interface Subject {
  name: string;
  role: "anon" | "authenticated";
  sub?: string;
  org?: string | null;
}

/**
 * For each subject and guarded table: how many rows it sees (capped) and how many belong to another organization
 * than its own. A member or a user without a profile seeing another organization's row, or anon seeing any row of a
 * tenant's table, is a violation; a super_admin's rows are reported (it reads all by design), and so are the rows of
 * a table every tenant shares (the public price list).
 */
export async function isolationMatrix(
  c: Pick<Client, "query">,
  roleColumn: string,
  tables: { table: string; orgColumn: string | null }[],
): Promise<{ matrix: IsolationMatrix; violations: string[] }> {
  const CAP = 10000;
  const violations: string[] = [];
  if (!/^[a-z_][a-z0-9_]*$/.test(roleColumn)) throw new Error(`verification: profile role column "${roleColumn}" is not a plain identifier`);
  const subjects: Subject[] = [{ name: "anon", role: "anon" }];
  const members = (
    await c.query(
      `SELECT DISTINCT ON (p.organization_id) p.id::text AS id, p.organization_id::text AS org
       FROM public.profiles p
      WHERE p.organization_id IS NOT NULL AND p.${roleColumn} IS DISTINCT FROM 'super_admin'
      ORDER BY p.organization_id, p.id LIMIT 2`,
    )
  ).rows;
  for (const [i, m] of (members as { id: string; org: string }[]).entries())
    subjects.push({ name: `member${i + 1}`, role: "authenticated", sub: m.id, org: m.org });
  const admin = (
    await c.query(`SELECT p.id::text AS id, p.organization_id::text AS org FROM public.profiles p WHERE p.${roleColumn} = 'super_admin' ORDER BY p.id LIMIT 1`)
  ).rows[0];
  if (admin) subjects.push({ name: "super_admin", role: "authenticated", sub: admin.id, org: admin.org });
  // A signed-in user with no profile: an auth user without one if there is such a user, else an id nobody has.
  const lone = (
    await c.query(`SELECT u.id::text AS id FROM auth.users u WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = u.id) ORDER BY u.id LIMIT 1`)
  ).rows[0];
  subjects.push({ name: "no_profile", role: "authenticated", sub: lone?.id ?? "00000000-0000-4000-8000-0000000000aa", org: null });

  const matrix: IsolationMatrix = {
    // No person's id: the matrix goes into Pulumi state, history, backups and reports, where guardian.erase_user
    // cannot reach (contract: "Audit and GDPR"). A subject is named by its part (member1, super_admin, ...).
    subjects: Object.fromEntries(subjects.map((s) => [s.name, { role: s.role, user: null, organization: s.org ?? null }])),
    tables: {},
  };
  for (const t of tables) {
    const row: IsolationMatrix["tables"][string] = {};
    for (const s of subjects) {
      try {
        await rolledBack(c, async () => {
          await actAs(c, s);
          const visible = Number((await c.query(`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${t.table} LIMIT ${CAP}) x`)).rows[0].n);
          const other = t.orgColumn
            ? Number(
                (
                  await c.query(`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${t.table} WHERE ${t.orgColumn} IS DISTINCT FROM $1::uuid LIMIT ${CAP}) x`, [
                    s.org ?? null,
                  ])
                ).rows[0].n,
              )
            : null;
          row[s.name] = { visible, otherOrganizations: other };
          // A table shared by every tenant (the price list, no organization column) is no leak to read.
          const leak =
            s.name !== "super_admin" &&
            t.orgColumn !== null &&
            ((s.role === "anon" && visible > 0) || (other !== null && other > 0) || (s.name === "no_profile" && visible > 0));
          if (leak) {
            violations.push(
              `tenant isolation: ${s.name} (${s.role}) reads ${t.orgColumn ? `${other} row(s) of other organizations` : `${visible} row(s)`} of ${t.table}`,
            );
          }
        });
      } catch (e) {
        if (errorCode(e) === "42501" && /permission denied for (table|relation|schema)/.test(errorMessage(e)))
          row[s.name] = { visible: 0, otherOrganizations: 0, denied: true };
        else {
          row[s.name] = { error: errorMessage(e) };
          violations.push(`tenant isolation: could not read ${t.table} as ${s.name}: ${errorMessage(e)}`);
        }
      }
    }
    matrix.tables[t.table] = row;
  }
  return { matrix, violations };
}
