/**
 * The go/no-go rules of the policy pack as pure functions over resources (type, props, dependencies), so they can be
 * tested without the engine. index.ts wires them into the PolicyPack; each returns the violations it found, one
 * message each, naming the resource's object and what to change.
 *
 * Resource shapes (docs/architecture.md): dynamic resources of module "guardian" have type
 * `pulumi-nodejs:dynamic/guardian:<Type>`. A SqlObject's inputs are kind, objectName, sqlFile, sql, meta.
 */

export const SQL_OBJECT = "pulumi-nodejs:dynamic/guardian:SqlObject";
export const BACKFILL = "pulumi-nodejs:dynamic/guardian:Backfill";
export const isBackup = (type: string) => type.startsWith("pulumi-nodejs:dynamic/") && type.endsWith(":Backup");

/** Tables that hold tenant data whatever the resources say (contract: "Tenant isolation"). */
export const FIXED_TENANT_TABLES = ["organizations", "organization_credits", "credit_consumption_logs", "credit_actions"];
export const POOLS = ["ai", "whatsapp", "email", "sms"];

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
  const s = String(t ?? "").trim().toLowerCase().replace(/"/g, "");
  return s.startsWith("public.") ? s.slice("public.".length) : s;
}

const sqlObjects = (resources: Res[], kind?: string) =>
  resources.filter((r) => r.type === SQL_OBJECT && (kind === undefined || r.props?.kind === kind));

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
    const missing = [!rlsTables.has(t) && "no rls resource (SqlObject kind \"rls\", meta.table)", !policyTables.has(t) && "no policy resource (SqlObject kind \"policy\", meta.table)"].filter(Boolean);
    if (missing.length) out.push({ message: `table ${t} holds tenant data but has ${missing.join(" and ")}` });
  }
  for (const r of rls) {
    if (!r.props.meta?.table) out.push({ message: `rls resource ${r.name} has no meta.table`, urn: r.urn });
    const sql = maskSql(String(r.props.sql ?? "")).masked;
    if (typeof r.props.sql === "string" && !/\bENABLE\s+ROW\s+LEVEL\s+SECURITY\b/i.test(sql)) {
      out.push({ message: `rls resource ${r.name} (${r.props.meta?.table}): its SQL does not ENABLE ROW LEVEL SECURITY`, urn: r.urn });
    }
  }
  for (const r of sqlObjects(resources)) {
    if (typeof r.props.sql === "string" && /\b(DISABLE|NO\s+FORCE)\s+ROW\s+LEVEL\s+SECURITY\b/i.test(maskSql(r.props.sql).masked)) {
      out.push({ message: `${r.props.kind} ${r.props.objectName} (sql/${r.props.sqlFile}) disables row level security`, urn: r.urn });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// security-definer-pins-search-path: a small SQL reader (comments, strings, quoted identifiers, dollar quotes)
// ---------------------------------------------------------------------------------------------------------------

/**
 * The SQL with comments blanked and the contents of strings and dollar-quoted bodies blanked (delimiters kept), so
 * that keywords are only matched where they are code. `blocks` are the dollar-quoted contents (DO blocks, function
 * bodies), read again as SQL: a CREATE FUNCTION inside a DO block is still seen.
 */
export function maskSql(sql: string): { masked: string; blocks: { at: number; text: string }[] } {
  let out = "";
  const blocks: { at: number; text: string }[] = [];
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i];
    const next = sql[i + 1];
    if (ch === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      const stop = end === -1 ? sql.length : end;
      out += " ".repeat(stop - i);
      i = stop;
    } else if (ch === "/" && next === "*") {
      const end = sql.indexOf("*/", i + 2);
      const stop = end === -1 ? sql.length : end + 2;
      out += sql.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (ch === "'" || ch === '"') {
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === ch && sql[j + 1] === ch) j += 2;
        else if (sql[j] === ch) break;
        else j++;
      }
      // Quoted identifiers keep their text (names matter); string contents are blanked.
      out += ch === '"' ? sql.slice(i, j + 1) : ch + sql.slice(i + 1, j).replace(/[^\n]/g, " ") + (j < sql.length ? ch : "");
      i = j + 1;
    } else if (ch === "$" && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(sql.slice(i)) && !/[A-Za-z0-9_]/.test(sql[i - 1] ?? "")) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      const stop = end === -1 ? sql.length : end;
      blocks.push({ at: i, text: sql.slice(i + tag.length, stop) });
      out += tag + sql.slice(i + tag.length, stop).replace(/[^\n]/g, " ") + (end === -1 ? "" : tag);
      i = end === -1 ? sql.length : end + tag.length;
    } else {
      out += ch;
      i++;
    }
  }
  return { masked: out, blocks };
}

export interface FunctionFacts {
  /** schema.name, lower case (unqualified names are taken as public). */
  name: string;
  securityDefiner: boolean;
  pinsSearchPath: boolean;
  /**
   * The pinned search_path as PostgreSQL stores it, one schema per element (unquoted names lower-cased, quoted names
   * and string literals as written: `SET search_path = ''` is [""], `'pg_catalog, pg_temp'` is ONE schema named
   * "pg_catalog, pg_temp"); null when not pinned (or RESET).
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
 * element by element as PostgreSQL stores them; null when the value is not a list of schemas (DEFAULT, FROM CURRENT).
 *   pg_catalog, pg_temp       -> ["pg_catalog", "pg_temp"]
 *   ''                        -> [""]            (the empty path)
 *   'pg_catalog, pg_temp'     -> ["pg_catalog, pg_temp"]  (one literal is one schema name)
 *   "PG_TEMP"                 -> ["PG_TEMP"]     (quoted: not pg_temp)
 */
export function parseSearchPath(value: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  const ws = () => {
    while (i < value.length && /\s/.test(value[i])) i++;
  };
  for (;;) {
    ws();
    const ch = value[i];
    if (ch === "'" || ch === '"') {
      let j = i + 1;
      let item = "";
      while (j < value.length) {
        if (value[j] === ch && value[j + 1] === ch) {
          item += ch;
          j += 2;
        } else if (value[j] === ch) break;
        else item += value[j++];
      }
      if (j >= value.length) return null; // unterminated
      out.push(item);
      i = j + 1;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(value.slice(i));
      if (!m) return null;
      out.push(m[0].toLowerCase());
      i += m[0].length;
    }
    ws();
    if (value[i] === ",") {
      i++;
      continue;
    }
    break;
  }
  if (out.length === 1 && out[0] === "default" && !/^\s*["']/.test(value)) return null; // SET search_path = DEFAULT
  return out;
}

/** A pinned search_path is safe for a SECURITY DEFINER function when it ends with pg_temp (named, so searched last). */
export function searchPathEndsWithPgTemp(path: string[] | null): boolean {
  return !!path && path.length > 0 && path[path.length - 1] === "pg_temp";
}

/** The value after `SET search_path =|TO` in a statement: read from the original text (the masked one blanks strings). */
const SET_SEARCH_PATH = /\bSET\s+search_path\s*(?:=|\bTO\b)\s*/i;
const CLAUSE_END = /^(?:AS|LANGUAGE|SECURITY|SET|RESET|STABLE|IMMUTABLE|VOLATILE|STRICT|CALLED|RETURNS|PARALLEL|COST|ROWS|LEAKPROOF|NOT|EXTERNAL|WINDOW|SUPPORT|TRANSFORM|BEGIN|RETURN)\b/i;
function searchPathIn(masked: string, original: string): string[] | null {
  const m = SET_SEARCH_PATH.exec(masked);
  if (!m) return null;
  const from = m.index + m[0].length;
  // The value runs until the next clause keyword outside quotes (masked text has no quoted content) or the end.
  let end = masked.length;
  const re = /\s+(?=[A-Za-z])/g;
  re.lastIndex = from;
  for (let x = re.exec(masked); x; x = re.exec(masked)) {
    const at = x.index + x[0].length;
    if (CLAUSE_END.test(masked.slice(at))) {
      // a clause keyword follows the value only after a complete element (not after a comma)
      if (!/,\s*$/.test(masked.slice(from, x.index + x[0].length))) {
        end = x.index;
        break;
      }
    }
  }
  return parseSearchPath(original.slice(from, end).trim());
}

const IDENT = String.raw`(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)`;
const QNAME = String.raw`${IDENT}(?:\s*\.\s*${IDENT})?`;

function qualify(name: string): string {
  const n = name.replace(/"/g, "").replace(/\s+/g, "").toLowerCase();
  return n.includes(".") ? n : `public.${n}`;
}

/** Splits "a(uuid, text), b.c(int)" at top-level commas and keeps the names. */
function functionNames(list: string): string[] {
  const names: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of list) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      names.push(cur);
      cur = "";
    } else cur += ch;
  }
  names.push(cur);
  return names.map((n) => n.replace(/\(.*$/s, "").trim()).filter(Boolean).map(qualify);
}

function grantees(list: string): string[] {
  return list.split(",").map((g) => g.trim().replace(/"/g, "").replace(/\s+(WITH\s+GRANT\s+OPTION|GRANTED\s+BY.*|CASCADE|RESTRICT)$/i, "").toLowerCase()).filter(Boolean);
}

/** Statements of a (masked) text with their offsets, split at top-level semicolons (dollar bodies were blanked).
 *  `start` is where the trimmed `text` begins, so the original text of a statement is original.slice(start, start + text.length). */
function statements(masked: string): { at: number; end: number; start: number; text: string }[] {
  const out: { at: number; end: number; start: number; text: string }[] = [];
  let at = 0;
  for (const part of masked.split(";")) {
    if (part.trim()) out.push({ at, end: at + part.length, start: at + (part.length - part.trimStart().length), text: part.trim() });
    at += part.length + 1;
  }
  return out;
}

/** Every function the SQL creates, with what the SQL says about its security. DO blocks are read too. */
export function analyzeFunctions(sql: string): FunctionFacts[] {
  const facts: FunctionFacts[] = [];
  const created = new Map<string, FunctionFacts[]>();
  const scan = (text: string) => {
    const { masked, blocks } = maskSql(text);
    for (const { at, end, start, text: st } of statements(masked)) {
      const original = text.slice(start, start + st.length);
      // Bodies inside this statement (a DO block creating functions) are read in place, in order.
      const inner = () => {
        for (const b of blocks) if (b.at >= at && b.at < end && /\b(CREATE|ALTER|GRANT|REVOKE)\b/i.test(b.text)) scan(b.text);
      };
      const create = new RegExp(String.raw`\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(${QNAME})`, "i").exec(st);
      if (create) {
        const pins = SET_SEARCH_PATH.test(st);
        const f: FunctionFacts = {
          name: qualify(create[1]),
          securityDefiner: /\bSECURITY\s+DEFINER\b/i.test(st),
          pinsSearchPath: pins,
          searchPath: pins ? searchPathIn(st, original) : null,
          revokedFromPublic: false,
          revokedFromAnon: false,
          grantedTo: [],
        };
        facts.push(f);
        created.set(f.name, [...(created.get(f.name) ?? []), f]);
        inner();
        continue;
      }
      const alter = new RegExp(String.raw`\bALTER\s+FUNCTION\s+(${QNAME})`, "i").exec(st);
      if (alter) {
        for (const f of created.get(qualify(alter[1])) ?? []) {
          if (/\bSECURITY\s+DEFINER\b/i.test(st)) f.securityDefiner = true;
          if (/\bSECURITY\s+INVOKER\b/i.test(st)) f.securityDefiner = false;
          if (SET_SEARCH_PATH.test(st)) {
            f.pinsSearchPath = true;
            f.searchPath = searchPathIn(st, original);
          }
          if (/\bRESET\s+(search_path|ALL)\b/i.test(st)) {
            f.pinsSearchPath = false;
            f.searchPath = null;
          }
        }
        continue;
      }
      const priv = /\b(GRANT|REVOKE)\s+(?:GRANT\s+OPTION\s+FOR\s+)?([\s\S]*?)\s+ON\s+(FUNCTIONS?|ROUTINES?|ALL\s+(?:FUNCTIONS|ROUTINES)\s+IN\s+SCHEMA)\s+([\s\S]*?)\s+(TO|FROM)\s+([\s\S]*)$/i.exec(st);
      inner();
      if (priv && !/\bDEFAULT\s+PRIVILEGES\b/i.test(st)) {
        const [, verb, privileges, onWhat, targets, , who] = priv;
        if (!/\b(ALL|EXECUTE)\b/i.test(privileges)) continue;
        const schemaWide = /^ALL\b/i.test(onWhat);
        const covered = schemaWide
          ? (n: string) => targets.split(",").map((s) => s.trim().replace(/"/g, "").toLowerCase()).includes(n.split(".")[0])
          : ((names) => (n: string) => names.includes(n))(functionNames(targets));
        const roles = grantees(who);
        for (const f of facts) {
          if (!covered(f.name)) continue;
          if (verb.toUpperCase() === "REVOKE") {
            if (roles.includes("public")) f.revokedFromPublic = true;
            if (roles.includes("anon")) f.revokedFromAnon = true;
            f.grantedTo = f.grantedTo.filter((g) => !roles.includes(g)); // taken back
          }
          if (verb.toUpperCase() === "GRANT") {
            for (const r of roles) if ((r === "anon" || r === "public") && !f.grantedTo.includes(r)) f.grantedTo.push(r);
          }
        }
      }
    }
  };
  scan(sql);
  return facts;
}

/** A search_path as an operator would write it: names, quoted where they must be; "" for the empty path. */
function showSearchPath(path: string[] | null): string {
  if (path === null) return "(not a list of schemas)";
  return path.map((x) => (/^[a-z_][a-z0-9_$]*$/.test(x) ? x : `"${x.replace(/"/g, '""')}"`)).join(", ");
}

/** Why a pinned search_path is not safe, in words an operator can act on. */
function pgTempProblem(path: string[] | null): string {
  const empty = path !== null && path.length === 1 && path[0] === "";
  return `does not end with pg_temp${empty ? " (an empty search_path still searches the temporary schema first)" : ""}: ` +
    "PostgreSQL searches the caller's temporary schema first for tables and types unless pg_temp is named, so the caller's " +
    "objects can stand in for the function's (SET search_path = pg_catalog, pg_temp)";
}

export function securityDefinerProblems(r: Pick<Res, "props" | "name">): string[] {
  const p = r.props;
  const sql = typeof p.sql === "string" ? p.sql : "";
  const where = `${p.kind} ${p.objectName ?? r.name}${p.sqlFile ? ` (sql/${p.sqlFile})` : ""}`;
  const out: string[] = [];
  const definers = analyzeFunctions(sql).filter((f) => f.securityDefiner);
  for (const f of definers) {
    if (!f.pinsSearchPath) out.push(`${where}: SECURITY DEFINER function ${f.name} does not pin search_path (add SET search_path = pg_catalog, pg_temp to its definition)`);
    else if (!searchPathEndsWithPgTemp(f.searchPath)) {
      out.push(`${where}: SECURITY DEFINER function ${f.name} pins search_path = ${showSearchPath(f.searchPath)}, which ${pgTempProblem(f.searchPath)}`);
    }
    if (!f.revokedFromPublic) out.push(`${where}: SECURITY DEFINER function ${f.name} stays executable by PUBLIC (no REVOKE EXECUTE ... FROM PUBLIC after its CREATE)`);
    if (!f.revokedFromAnon) out.push(`${where}: SECURITY DEFINER function ${f.name} does not revoke EXECUTE from anon explicitly (Supabase's default privileges grant new functions to anon, which a REVOKE ... FROM PUBLIC leaves in place: add REVOKE EXECUTE ON FUNCTION ... FROM anon after its CREATE)`);
    for (const g of f.grantedTo) out.push(`${where}: SECURITY DEFINER function ${f.name} is granted EXECUTE to ${g}`);
  }
  // SECURITY DEFINER mentioned where no CREATE FUNCTION was recognised (e.g. built by EXECUTE format(...)): cannot check.
  if (definers.length === 0 && /\bSECURITY\s+DEFINER\b/i.test(maskSql(sql).masked)) {
    out.push(`${where}: says SECURITY DEFINER outside a CREATE FUNCTION the policy can read; declare the function with a literal CREATE FUNCTION`);
  }
  if (p.kind === "function") {
    const meta = p.meta ?? {};
    if (definers.length > 0 && meta.securityDefiner !== true) {
      out.push(`${where}: meta.securityDefiner is ${JSON.stringify(meta.securityDefiner)} but the SQL declares SECURITY DEFINER (${definers.map((f) => f.name).join(", ")})`);
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
    out.push(`backfill ${r.name}: input requireVerifiedBackup is ${JSON.stringify(r.props.requireVerifiedBackup)}, expected true (the backfill must refuse to run without a verified restore)`);
  }
  return out;
}

export function splitProblems(split: unknown, name: string): string[] {
  if (split === undefined || split === null || typeof split !== "object" || Array.isArray(split)) {
    return [`backfill ${name}: input split is ${JSON.stringify(split)}, expected { ai, whatsapp, email, sms } shares`];
  }
  const s = split as Record<string, unknown>;
  const out: string[] = [];
  for (const k of Object.keys(s)) if (!POOLS.includes(k)) out.push(`backfill ${name}: split.${k} is not a pool (pools are ${POOLS.join(", ")})`);
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

/** Margins of every plan with a price above 0, every pool counted. Problems: pools without a cost, plans without a pool. */
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
    }
  }
  const margins: PlanMargin[] = [];
  for (const name of Object.keys(plans).sort()) {
    const plan = plans[name] ?? {};
    const price = plan.priceEur;
    if (typeof price !== "number" || price <= 0) {
      skipped.push(`${name} (price ${price === null ? "custom" : JSON.stringify(price)})`);
      continue;
    }
    const costPerPool: Record<string, number> = {};
    for (const pool of pools) {
      const units = plan[pool];
      if (typeof units !== "number") {
        problems.push(`plan ${name} states no ${pool} allocation; a margin that leaves a pool out is false`);
        continue;
      }
      costPerPool[pool] = units * (typeof costs[pool] === "number" ? (costs[pool] as number) : 0);
    }
    const cost = Object.values(costPerPool).reduce((a, b) => a + b, 0);
    margins.push({ plan: name, priceEur: price, costEur: round(cost, 4), marginPct: round(((price - cost) / price) * 100, 2), costPerPool });
  }
  return { margins, problems, skipped };
}

export function marginViolations(meta: any): string[] {
  const target = typeof meta?.marginTarget === "number" ? meta.marginTarget : 0.82;
  const { margins, problems } = planMargins(meta);
  const below = margins
    .filter((m) => m.marginPct < target * 100 - 1e-9)
    .map((m) =>
      `plan ${m.plan}: margin ${m.marginPct.toFixed(1)}% is below the target ${(target * 100).toFixed(1)}% ` +
      `(price ${eur(m.priceEur)}, cost ${eur(m.costEur)}: ${Object.entries(m.costPerPool).map(([p, c]) => `${p} ${eur(c)}`).join(" + ")})`);
  return [...problems, ...below];
}

export function marginsResources(resources: Res[]): Res[] {
  return sqlObjects(resources).filter((r) => r.props.meta?.kind === "plan-margins");
}
