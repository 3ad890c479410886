/**
 * The shape of the database the program meets, discovered before anything is written (contract: "On a real
 * database"). The program's SQL reads a fixed list of tables, columns and functions (REQUIRED below); go/no-go
 * refuses, naming each one, when any is missing. Where the CRM is known to come in two shapes, the program adapts:
 *
 *   profile role column   public.profiles.role (the CRM's first schema) or .user_role (its later SQL). Both present,
 *                         or neither: refused unless guardian:schema.profileRoleColumn names the one to use.
 *   trial detection       organization_credits.is_trial where that column exists; otherwise (the live CRM never
 *                         created it) a plan name in guardian:schema.trialPlans (default trial_14, compared after
 *                         trim and lower-case) with cycle_end_date. guardian:schema.trialColumn overrides either way.
 *
 * The SQL files carry the two adaptable spots as tokens, rendered per shape by renderSql:
 *   {{profile_role:p}}   the role column of profiles alias p       -> p.role | p.user_role
 *   {{profile_role}}     the same column, unqualified              -> role | user_role
 *   {{is_trial:oc}}      whether the credit row alias oc is a trial -> oc.is_trial | lower(btrim(oc.plan_name)) = ANY(...)
 * so the rendered text (and its sha256) says which shape preview found.
 */
import type { Client } from "pg";

export interface DatabaseShape {
  /** The column of public.profiles holding user / admin / super_admin. */
  profileRoleColumn: string;
  /** Trials by a boolean column of organization_credits, or by plan name (with cycle_end_date). */
  trial: { column: string } | { plans: string[] };
}

/** The seed's shape (facts.md's first schema): tests and tools that apply the SQL to a seeded database use it. */
export const SEED_SHAPE: DatabaseShape = { profileRoleColumn: "role", trial: { column: "is_trial" } };

/** Every table and column the program's SQL reads, and the functions it calls. */
export const REQUIRED_COLUMNS: Record<string, string[]> = {
  organizations: ["id"],
  profiles: ["id", "organization_id"],
  organization_credits: ["organization_id", "plan_name", "total_credits", "credits_remaining", "cycle_end_date", "updated_at"],
  credit_actions: ["action_type", "credits_cost", "description"],
  credit_consumption_logs: ["id", "organization_id", "action_type", "credits_consumed", "credits_remaining", "success", "error_message", "created_at"],
};
/** Beyond auth.uid(), which the baseline gate checks (lib/preflight.ts). */
export const REQUIRED_FUNCTIONS = ["auth.role()"];

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

export function describeShape(s: DatabaseShape): string {
  const trial =
    "column" in s.trial
      ? `trials by organization_credits.${s.trial.column}`
      : `trials by plan name (${s.trial.plans.join(", ")}) and cycle_end_date: organization_credits has no is_trial`;
  return `shape: profile role column profiles.${s.profileRoleColumn}; ${trial}`;
}

/** The SQL expression for a token, for one alias. */
function isTrialSql(s: DatabaseShape, alias: string): string {
  if ("column" in s.trial) return `${alias}.${s.trial.column}`;
  const plans = s.trial.plans.map((p) => `'${p.replace(/'/g, "''")}'`).join(", ");
  return `(lower(btrim(${alias}.plan_name, E' \\t\\r\\n')) = ANY (ARRAY[${plans}]::text[]))`;
}

/** Renders the shape tokens of a SQL file. Text without tokens comes back unchanged. */
export function renderSql(text: string, shape: DatabaseShape): string {
  return text
    .replace(/\{\{profile_role:([a-z_][a-z0-9_]*)\}\}/g, (_m, alias) => `${alias}.${shape.profileRoleColumn}`)
    .replace(/\{\{profile_role\}\}/g, shape.profileRoleColumn)
    .replace(/\{\{is_trial:([a-z_][a-z0-9_]*)\}\}/g, (_m, alias) => isTrialSql(shape, alias));
}

/** Any token left unrendered (a typo in a file), for the SQL loader to refuse. */
export function unrenderedTokens(text: string): string[] {
  return [...new Set(text.match(/\{\{[^}]*\}\}/g) ?? [])];
}

export interface ShapeOverrides {
  profileRoleColumn?: string;
  /** A column name; null: no column, trials by plan name. */
  trialColumn?: string | null;
  trialPlans: string[];
}

export interface ShapeDiscovery {
  shape?: DatabaseShape;
  /** Each missing table, column or function, or an ambiguity, one line each (a NO-GO). */
  problems: string[];
  notes: string[];
}

/** Reads the catalogue (read-only) and decides the shape, or says what is missing. */
export async function discoverShape(c: Client, o: ShapeOverrides): Promise<ShapeDiscovery> {
  const problems: string[] = [];
  const notes: string[] = [];
  const cols = await c.query<{ t: string; a: string }>(
    `SELECT c.relname AS t, a.attname AS a
       FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
      WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY ($1::text[]) AND c.relkind IN ('r', 'p')
        AND a.attnum > 0 AND NOT a.attisdropped`,
    [Object.keys(REQUIRED_COLUMNS)],
  );
  const have = new Map<string, Set<string>>();
  for (const r of cols.rows) {
    if (!have.has(r.t)) have.set(r.t, new Set());
    have.get(r.t)!.add(r.a);
  }
  for (const [t, need] of Object.entries(REQUIRED_COLUMNS)) {
    const got = have.get(t);
    if (!got) continue; // a missing table is the baseline gate's to report
    const missing = need.filter((x) => !got.has(x));
    for (const m of missing) problems.push(`column public.${t}.${m} is missing (the program's SQL reads it)`);
  }
  const fns = await c.query<{ f: string; ok: boolean }>(`SELECT f, to_regprocedure(f) IS NOT NULL AS ok FROM unnest($1::text[]) f`, [REQUIRED_FUNCTIONS]);
  for (const r of fns.rows) if (!r.ok) problems.push(`function ${r.f} is missing (the program's SQL calls it)`);

  const profiles = have.get("profiles") ?? new Set<string>();
  let roleColumn: string | undefined;
  if (o.profileRoleColumn !== undefined) {
    if (!profiles.has(o.profileRoleColumn)) {
      problems.push(`guardian:schema.profileRoleColumn names public.profiles.${o.profileRoleColumn}, which does not exist`);
    } else {
      roleColumn = o.profileRoleColumn;
      notes.push(`profile role column profiles.${roleColumn} (from guardian:schema.profileRoleColumn)`);
    }
  } else {
    const candidates = ["role", "user_role"].filter((x) => profiles.has(x));
    if (candidates.length === 1) roleColumn = candidates[0];
    else if (have.has("profiles")) {
      problems.push(
        candidates.length === 0
          ? "public.profiles has neither a role nor a user_role column: set guardian:schema.profileRoleColumn to the column that holds super_admin"
          : "public.profiles has both role and user_role: set guardian:schema.profileRoleColumn to the one that holds super_admin",
      );
    }
  }

  const credits = have.get("organization_credits") ?? new Set<string>();
  let trial: DatabaseShape["trial"] | undefined;
  if (o.trialColumn === null) {
    trial = { plans: o.trialPlans };
  } else if (o.trialColumn !== undefined) {
    if (!credits.has(o.trialColumn)) problems.push(`guardian:schema.trialColumn names public.organization_credits.${o.trialColumn}, which does not exist`);
    else trial = { column: o.trialColumn };
  } else {
    trial = credits.has("is_trial") ? { column: "is_trial" } : { plans: o.trialPlans };
  }
  if (trial && "column" in trial) {
    const t = await c.query(
      `SELECT format_type(a.atttypid, a.atttypmod) AS ty FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = to_regclass('public.organization_credits') AND a.attname = $1 AND NOT a.attisdropped`,
      [trial.column],
    );
    if (t.rows[0] && t.rows[0].ty !== "boolean") {
      problems.push(
        `public.organization_credits.${trial.column} is ${t.rows[0].ty}, not boolean: it cannot tell trials (set guardian:schema.trialColumn to null to use trial plan names)`,
      );
    }
  }
  for (const x of [roleColumn, trial && "column" in trial ? trial.column : undefined]) {
    if (x !== undefined && !IDENT.test(x)) problems.push(`column name "${x}" is not a plain lower-case identifier; the program does not quote it`);
  }
  if (problems.length || !roleColumn || !trial) return { problems, notes };
  const shape: DatabaseShape = { profileRoleColumn: roleColumn, trial };
  notes.push(describeShape(shape));
  return { shape, problems, notes };
}
