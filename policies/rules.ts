/**
 * The go/no-go rules of the policy pack as pure functions over resources (type, props, dependencies), so they can be
 * tested without the engine. index.ts wires them into the PolicyPack; each returns the violations it found, one
 * message each, naming the resource's object and what to change.
 *
 * Resource shapes (docs/architecture.md): dynamic resources of module "guardian" have type
 * `pulumi-nodejs:dynamic/guardian:<Type>`. A SqlObject's inputs are kind, objectName, sqlFile, sql, meta.
 */

import { createdFunctions } from "../lib/functionMeta";
import { POOLS, type Pool } from "../lib/config";
import { planMargins as computeMargins } from "../lib/margins";
import { type ExecutedSql, executedStatements, parseSql, type RawStmt, settingValues, SqlParseError, unwrap } from "../lib/pgsql";

/** The rules read SQL with PostgreSQL's parser: await this once before calling them (index.ts does, per validation). */
export { loadSqlParser } from "../lib/pgsql";

export const SQL_OBJECT = "pulumi-nodejs:dynamic/guardian:SqlObject";
export const BACKFILL = "pulumi-nodejs:dynamic/guardian:Backfill";
export const isBackup = (type: string) => type.startsWith("pulumi-nodejs:dynamic/") && type.endsWith(":Backup");

/** Tables that hold tenant data whatever the resources say (contract: "Tenant isolation"). */
export const FIXED_TENANT_TABLES = ["organizations", "organization_credits", "credit_consumption_logs", "credit_actions"];
export { POOLS };

export interface Res {
  type: string;
  name: string;
  urn: string;
  props: Record<string, any>;
  dependencies: Res[];
  propertyDependencies?: Record<string, Res[]>;
}

export interface Violation {
  message: string;
  urn?: string;
}

/** "organizations" and "public.organizations" are the same table; other schemas keep their prefix. */
export function normaliseTable(t: unknown): string {
  const s = String(t ?? "")
    .trim()
    .toLowerCase()
    .replace(/"/g, "");
  return s.startsWith("public.") ? s.slice("public.".length) : s;
}

/** ALTER TABLE ... ENABLE | DISABLE | FORCE | NO FORCE ROW LEVEL SECURITY among the statements, with their table. */
function rowSecuritySwitches(executed: ExecutedSql): { subtype: string; table: string }[] {
  const out: { subtype: string; table: string }[] = [];
  for (const s of executed.statements) {
    if (s.type !== "AlterTableStmt") continue;
    const table = normaliseTable([s.stmt.relation?.schemaname, s.stmt.relation?.relname].filter(Boolean).join("."));
    for (const c of s.stmt.cmds ?? []) {
      const subtype = unwrap(c)[1].subtype;
      if (/RowSecurity$/.test(String(subtype))) out.push({ subtype, table });
    }
  }
  return out;
}

const sqlObjects = (resources: Res[], kind?: string) => resources.filter((r) => r.type === SQL_OBJECT && (kind === undefined || r.props?.kind === kind));

/** How a message names a SqlObject: its kind, object and file. */
const objectLabel = (r: Res) => `${r.props.kind} ${r.props.objectName}${r.props.sqlFile ? ` (sql/${r.props.sqlFile})` : ""}`;

/** Every SqlObject with SQL, read with PostgreSQL's parser: its statements, or the parse error. */
function readSqlObjects(resources: Res[]): ({ r: Res; what: string } & ({ executed: ExecutedSql } | { parseError: SqlParseError }))[] {
  return sqlObjects(resources)
    .filter((r) => typeof r.props.sql === "string")
    .map((r) => {
      const what = objectLabel(r);
      try {
        return { r, what, executed: executedStatements(r.props.sql) };
      } catch (e) {
        if (!(e instanceof SqlParseError)) throw e;
        return { r, what, parseError: e };
      }
    });
}

// ---------------------------------------------------------------------------------------------------------------
// tenant-tables-have-rls
// ---------------------------------------------------------------------------------------------------------------

export function tenantTablesHaveRls(resources: Res[]): Violation[] {
  const out: Violation[] = [];
  const rls = sqlObjects(resources, "rls");
  const policies = sqlObjects(resources, "policy");
  const rlsTables = new Set(rls.map((r) => normaliseTable(r.props.meta?.table)));
  const policyTables = new Set(policies.map((r) => normaliseTable(r.props.meta?.table)));
  const tenant = new Set(FIXED_TENANT_TABLES);
  for (const r of rls) if (r.props.meta?.tenantData === true) tenant.add(normaliseTable(r.props.meta.table));

  for (const t of [...tenant].sort()) {
    const missing = [
      !rlsTables.has(t) && 'no rls resource (SqlObject kind "rls", meta.table)',
      !policyTables.has(t) && 'no policy resource (SqlObject kind "policy", meta.table)',
    ].filter(Boolean);
    if (missing.length) out.push({ message: `table ${t} holds tenant data but has ${missing.join(" and ")}` });
  }
  for (const r of rls) {
    if (!r.props.meta?.table) out.push({ message: `rls resource ${r.name} has no meta.table`, urn: r.urn });
  }
  for (const o of readSqlObjects(resources)) {
    const { r, what } = o;
    if ("parseError" in o) {
      out.push({
        message: `${what}: its SQL does not parse (${o.parseError.message}), so the policy cannot tell what it does to row level security`,
        urn: r.urn,
      });
      continue;
    }
    const executed = o.executed;
    const switches = rowSecuritySwitches(executed);
    if (switches.some((x) => x.subtype === "AT_DisableRowSecurity" || x.subtype === "AT_NoForceRowSecurity")) {
      out.push({ message: `${what} disables row level security`, urn: r.urn });
    }
    for (const u of executed.unreadable.filter((x) => /\b(DISABLE|NO\s+FORCE)\s+ROW\s+LEVEL\s+SECURITY\b/i.test(x.text))) {
      out.push({ message: `${what} may disable row level security in SQL built at run time (line ${u.line}: ${u.text})`, urn: r.urn });
    }
    if (r.props.kind === "rls" && r.props.meta?.table) {
      const table = normaliseTable(r.props.meta.table);
      if (!switches.some((x) => x.subtype === "AT_EnableRowSecurity" && x.table === table)) {
        out.push({ message: `rls resource ${r.name} (${r.props.meta.table}): its SQL does not ENABLE ROW LEVEL SECURITY on ${table}`, urn: r.urn });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// owner-only-trigger-truncate: no GRANT of TRIGGER or TRUNCATE (or ALL) on the tables the program's SECURITY DEFINER
// functions read or write. A trigger fires inside those functions and runs as their owner; TRUNCATE bypasses row
// level security and the append-only audit.
// ---------------------------------------------------------------------------------------------------------------

/** The tables whose TRIGGER and TRUNCATE stay the owner's. */
export const OWNER_ONLY_TABLES = [...FIXED_TENANT_TABLES, "profiles"];

export function ownerOnlyTriggerTruncate(resources: Res[]): Violation[] {
  const out: Violation[] = [];
  for (const o of readSqlObjects(resources)) {
    if ("parseError" in o) continue; // tenant-tables-have-rls names SQL that does not parse
    const { r, what } = o;
    for (const st of o.executed.statements) {
      if (st.type !== "GrantStmt" || st.stmt.is_grant !== true || st.stmt.objtype !== "OBJECT_TABLE") continue;
      const privs: string[] = (st.stmt.privileges ?? []).map((p: any) => String(unwrap(p)[1].priv_name ?? "").toLowerCase());
      const granted = privs.length === 0 ? ["all"] : privs.filter((p) => p === "trigger" || p === "truncate" || p === "all");
      if (!granted.length) continue;
      const tables =
        st.stmt.targtype === "ACL_TARGET_ALL_IN_SCHEMA"
          ? OWNER_ONLY_TABLES
          : (st.stmt.objects ?? []).map((o: any) => {
              const rv = unwrap(o)[1];
              return normaliseTable([rv.schemaname, rv.relname].filter(Boolean).join("."));
            });
      for (const t of tables.filter((x: string) => OWNER_ONLY_TABLES.includes(x))) {
        out.push({
          message: `${what} grants ${granted.map((g) => g.toUpperCase()).join(", ")} on ${t} (line ${st.line}): only the owner may hold TRIGGER and TRUNCATE on the tables the program's SECURITY DEFINER functions read or write`,
          urn: r.urn,
        });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// security-definer-pins-search-path: the SQL read with PostgreSQL's parser (lib/pgsql.ts, lib/functionMeta.ts)
// ---------------------------------------------------------------------------------------------------------------

export interface FunctionFacts {
  /** schema.name as PostgreSQL folds it (unqualified names are taken as public; quoted names stay quoted). */
  name: string;
  securityDefiner: boolean;
  pinsSearchPath: boolean;
  /**
   * The pinned search_path as PostgreSQL stores it, one schema per element (unquoted names lower-cased, quoted names
   * and string literals as written: `SET search_path = ''` is [""], `'pg_catalog, pg_temp'` is ONE schema named
   * "pg_catalog, pg_temp"); null when not pinned (or RESET, or TO DEFAULT) or not a list (FROM CURRENT).
   */
  searchPath: string[] | null;
  /** A REVOKE (ALL | EXECUTE) ... FROM PUBLIC that covers it, after its CREATE. */
  revokedFromPublic: boolean;
  /**
   * A REVOKE (ALL | EXECUTE) ... FROM anon that covers it, after its CREATE. Supabase's default privileges grant every
   * new function in public to anon directly, so revoking from PUBLIC alone leaves anon its EXECUTE.
   */
  revokedFromAnon: boolean;
  /** anon / public when a GRANT gives them EXECUTE on it (and no later REVOKE takes it back). */
  grantedTo: string[];
}

/**
 * The schemas of a search_path value as written in SQL (after `SET search_path =` / `TO`, or in a function's meta),
 * element by element as PostgreSQL stores them; null when the value is not a list of schemas (DEFAULT, FROM CURRENT,
 * not SQL).
 *   pg_catalog, pg_temp       -> ["pg_catalog", "pg_temp"]
 *   ''                        -> [""]            (the empty path)
 *   'pg_catalog, pg_temp'     -> ["pg_catalog, pg_temp"]  (one literal is one schema name)
 *   "PG_TEMP"                 -> ["PG_TEMP"]     (quoted: not pg_temp)
 */
export function parseSearchPath(value: string): string[] | null {
  let stmts: RawStmt[];
  try {
    stmts = parseSql(`SET search_path = ${value}`);
  } catch (e) {
    if (e instanceof SqlParseError) return null;
    throw e;
  }
  if (stmts.length !== 1) return null;
  const [type, set] = unwrap(stmts[0].stmt);
  return type === "VariableSetStmt" ? settingValues(set) : null;
}

/** A pinned search_path is safe for a SECURITY DEFINER function when it ends with pg_temp (named, so searched last). */
export function searchPathEndsWithPgTemp(path: string[] | null): boolean {
  return !!path && path.length > 0 && path[path.length - 1] === "pg_temp";
}

/**
 * Every function the SQL creates (top level and in DO blocks, in order), with what the SQL says about its security.
 * Throws SqlParseError when the SQL does not parse.
 */
export function analyzeFunctions(sql: string): FunctionFacts[] {
  return createdFunctions(sql).map((f) => ({
    name: f.qualifiedName,
    securityDefiner: f.securityDefiner,
    pinsSearchPath: f.pinsSearchPath,
    searchPath: f.searchPath,
    revokedFromPublic: f.revokedFrom.has("PUBLIC"),
    revokedFromAnon: f.revokedFrom.has("anon"),
    grantedTo: f.grantedTo.filter((g) => g === "anon" || g === "PUBLIC").map((g) => (g === "PUBLIC" ? "public" : g)),
  }));
}

/** A search_path as an operator would write it: names, quoted where they must be; "" for the empty path. */
function showSearchPath(path: string[] | null): string {
  if (path === null) return "(not a list of schemas)";
  return path.map((x) => (/^[a-z_][a-z0-9_$]*$/.test(x) ? x : `"${x.replace(/"/g, '""')}"`)).join(", ");
}

/** Why a pinned search_path is not safe, in words an operator can act on. */
function pgTempProblem(path: string[] | null): string {
  const empty = path !== null && path.length === 1 && path[0] === "";
  return (
    `does not end with pg_temp${empty ? " (an empty search_path still searches the temporary schema first)" : ""}: ` +
    "PostgreSQL searches the caller's temporary schema first for tables and types unless pg_temp is named, so the caller's " +
    "objects can stand in for the function's (SET search_path = pg_catalog, pg_temp)"
  );
}

export function securityDefinerProblems(r: Pick<Res, "props" | "name">): string[] {
  const p = r.props;
  const sql = typeof p.sql === "string" ? p.sql : "";
  const where = `${p.kind} ${p.objectName ?? r.name}${p.sqlFile ? ` (sql/${p.sqlFile})` : ""}`;
  const out: string[] = [];
  let definers: FunctionFacts[] = [];
  try {
    definers = analyzeFunctions(sql).filter((f) => f.securityDefiner);
    // SQL built at run time (EXECUTE format(...) in a DO block) that mentions SECURITY DEFINER: cannot be checked.
    for (const u of executedStatements(sql).unreadable.filter((x) => /\bsecurity\s+definer\b/i.test(x.text))) {
      out.push(
        `${where}: says SECURITY DEFINER outside a CREATE FUNCTION the policy can read (line ${u.line}: ${u.text}); declare the function with a literal CREATE FUNCTION`,
      );
    }
  } catch (e) {
    if (!(e instanceof SqlParseError)) throw e;
    out.push(`${where}: its SQL does not parse (${e.message}), so its SECURITY DEFINER functions cannot be checked`);
  }
  for (const f of definers) {
    if (!f.pinsSearchPath)
      out.push(`${where}: SECURITY DEFINER function ${f.name} does not pin search_path (add SET search_path = pg_catalog, pg_temp to its definition)`);
    else if (!searchPathEndsWithPgTemp(f.searchPath)) {
      out.push(`${where}: SECURITY DEFINER function ${f.name} pins search_path = ${showSearchPath(f.searchPath)}, which ${pgTempProblem(f.searchPath)}`);
    }
    if (!f.revokedFromPublic)
      out.push(`${where}: SECURITY DEFINER function ${f.name} stays executable by PUBLIC (no REVOKE EXECUTE ... FROM PUBLIC after its CREATE)`);
    if (!f.revokedFromAnon)
      out.push(
        `${where}: SECURITY DEFINER function ${f.name} does not revoke EXECUTE from anon explicitly (Supabase's default privileges grant new functions to anon, which a REVOKE ... FROM PUBLIC leaves in place: add REVOKE EXECUTE ON FUNCTION ... FROM anon after its CREATE)`,
      );
    for (const g of f.grantedTo) out.push(`${where}: SECURITY DEFINER function ${f.name} is granted EXECUTE to ${g}`);
  }
  if (p.kind === "function") {
    const meta = p.meta ?? {};
    if (definers.length > 0 && meta.securityDefiner !== true) {
      out.push(
        `${where}: meta.securityDefiner is ${JSON.stringify(meta.securityDefiner)} but the SQL declares SECURITY DEFINER (${definers.map((f) => f.name).join(", ")})`,
      );
    }
    if (meta.securityDefiner === true && typeof meta.searchPath !== "string") {
      out.push(`${where}: meta.securityDefiner is true but meta.searchPath is ${JSON.stringify(meta.searchPath)}, not a pinned search_path`);
    } else if (meta.securityDefiner === true && !searchPathEndsWithPgTemp(parseSearchPath(meta.searchPath))) {
      out.push(`${where}: meta.searchPath ${JSON.stringify(meta.searchPath)} ${pgTempProblem(parseSearchPath(meta.searchPath))}`);
    }
    if (meta.securityDefiner === true || definers.length > 0) {
      const roles = Array.isArray(meta.executeRoles) ? meta.executeRoles.map((x: unknown) => String(x).toLowerCase()) : [];
      for (const bad of ["anon", "public"]) if (roles.includes(bad)) out.push(`${where}: meta.executeRoles grants EXECUTE to ${bad}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// backfill-after-verified-backup, allocation-shares-valid
// ---------------------------------------------------------------------------------------------------------------

export function backfillProblems(r: Res): string[] {
  const out: string[] = [];
  const deps = [...(r.dependencies ?? []), ...Object.values(r.propertyDependencies ?? {}).flat()];
  if (!deps.some((d) => isBackup(d.type))) {
    out.push(`backfill ${r.name} does not depend on a Backup resource (pass the backup in dependsOn or use its backupId as an input)`);
  }
  if (r.props.requireVerifiedBackup !== true) {
    out.push(
      `backfill ${r.name}: input requireVerifiedBackup is ${JSON.stringify(r.props.requireVerifiedBackup)}, expected true (the backfill must refuse to run without a verified restore)`,
    );
  }
  return out;
}

export function splitProblems(split: unknown, name: string): string[] {
  if (split === undefined || split === null || typeof split !== "object" || Array.isArray(split)) {
    return [`backfill ${name}: input split is ${JSON.stringify(split)}, expected { ai, whatsapp, email, sms } shares`];
  }
  const s = split as Record<string, unknown>;
  const out: string[] = [];
  for (const k of Object.keys(s))
    if (!(POOLS as readonly string[]).includes(k)) out.push(`backfill ${name}: split.${k} is not a pool (pools are ${POOLS.join(", ")})`);
  let sum = 0;
  for (const pool of POOLS) {
    const v = s[pool];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      out.push(`backfill ${name}: split.${pool} is ${JSON.stringify(v)}, expected a share from 0 to 1 (every pool must be stated, 0 included)`);
    } else if (v < 0 || v > 1) {
      out.push(`backfill ${name}: split.${pool} = ${v} is outside 0..1`);
    } else sum += v;
  }
  if (sum > 1 + 1e-9) out.push(`backfill ${name}: split shares sum to ${round(sum, 6)} (${POOLS.map((p) => `${p} ${s[p]}`).join(" + ")}), more than 1`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// plan-margins
// ---------------------------------------------------------------------------------------------------------------

export interface PlanMargin {
  plan: string;
  priceEur: number;
  costEur: number;
  marginPct: number;
  costPerPool: Record<string, number>;
}

function round(n: number, d: number): number {
  const f = 10 ** d;
  return Math.round(n * f) / f;
}
/** Euros to the cent, rounding half up on the decimal value (2.355 -> 2.36, not the binary 2.35499...). */
const eur = (n: number) => `€${(Math.round(Math.round(n * 1e6) / 1e4) / 100).toFixed(2)}`;

/**
 * Margins of every plan with a price above 0, every pool counted, computed by lib/margins.ts (the one computation the
 * program, the report and this pack share; sql/margins/01_plan_margins.sql is its SQL twin, checked equal by
 * test/margins.test.ts). This function only checks what the resource's meta states first: a pool without a cost or a
 * plan without a pool's allocation is a problem, never a zero.
 */
export function planMargins(meta: any): { margins: PlanMargin[]; problems: string[]; skipped: string[] } {
  const plans: Record<string, any> = meta?.plans ?? {};
  const costs: Record<string, unknown> = meta?.providerCosts ?? {};
  const problems: string[] = [];
  const skipped: string[] = [];
  const pools = new Set<string>([...POOLS, ...Object.keys(costs)]);
  for (const p of Object.values(plans)) for (const k of Object.keys(p ?? {})) if (k !== "priceEur") pools.add(k);
  for (const pool of pools) {
    if (typeof costs[pool] !== "number" || !Number.isFinite(costs[pool] as number)) {
      problems.push(`pool ${pool} has no provider cost (guardian:providerCosts.${pool}); a margin that leaves a pool out is false`);
    } else if (!(POOLS as readonly string[]).includes(pool)) {
      problems.push(`pool ${pool} is not one of ${POOLS.join(", ")}; its cost would be counted nowhere`);
    }
  }
  const priced: Record<string, { priceEur: number } & Record<Pool, number>> = {};
  for (const name of Object.keys(plans).sort()) {
    const plan = plans[name] ?? {};
    const price = plan.priceEur;
    if (typeof price !== "number" || price <= 0) {
      skipped.push(`${name} (price ${price === null ? "custom" : JSON.stringify(price)})`);
      continue;
    }
    const missing = [...pools].filter((pool) => typeof plan[pool] !== "number");
    for (const pool of missing) problems.push(`plan ${name} states no ${pool} allocation; a margin that leaves a pool out is false`);
    priced[name] = {
      priceEur: price,
      ...(Object.fromEntries(POOLS.map((pool) => [pool, typeof plan[pool] === "number" ? plan[pool] : 0])) as Record<Pool, number>),
    };
  }
  const providerCosts = Object.fromEntries(POOLS.map((pool) => [pool, typeof costs[pool] === "number" ? (costs[pool] as number) : 0])) as Record<Pool, number>;
  const margins = computeMargins({ plans: priced, providerCosts, marginTarget: 0.82 }).map((m) => ({
    plan: m.plan,
    priceEur: m.priceEur!,
    costEur: m.costEur,
    marginPct: m.marginPct!,
    costPerPool: m.poolCostEur,
  }));
  return { margins, problems, skipped };
}

export function marginViolations(meta: any): string[] {
  const target = typeof meta?.marginTarget === "number" ? meta.marginTarget : 0.82;
  const { margins, problems } = planMargins(meta);
  const below = margins
    .filter((m) => m.marginPct < target * 100 - 1e-9)
    .map(
      (m) =>
        `plan ${m.plan}: margin ${m.marginPct.toFixed(1)}% is below the target ${(target * 100).toFixed(1)}% ` +
        `(price ${eur(m.priceEur)}, cost ${eur(m.costEur)}: ${Object.entries(m.costPerPool)
          .map(([p, c]) => `${p} ${eur(c)}`)
          .join(" + ")})`,
    );
  return [...problems, ...below];
}

export function marginsResources(resources: Res[]): Res[] {
  return sqlObjects(resources).filter((r) => r.props.meta?.kind === "plan-margins");
}
