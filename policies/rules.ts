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
  /** A REVOKE (ALL | EXECUTE) ... FROM PUBLIC that covers it, after its CREATE. */
  revokedFromPublic: boolean;
  /** anon / public when a GRANT gives them EXECUTE on it. */
  grantedTo: string[];
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

/** Statements of a (masked) text with their offsets, split at top-level semicolons (dollar bodies were blanked). */
function statements(masked: string): { at: number; end: number; text: string }[] {
  const out: { at: number; end: number; text: string }[] = [];
  let at = 0;
  for (const part of masked.split(";")) {
    if (part.trim()) out.push({ at, end: at + part.length, text: part.trim() });
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
    for (const { at, end, text: st } of statements(masked)) {
      // Bodies inside this statement (a DO block creating functions) are read in place, in order.
      const inner = () => {
        for (const b of blocks) if (b.at >= at && b.at < end && /\b(CREATE|ALTER|GRANT|REVOKE)\b/i.test(b.text)) scan(b.text);
      };
      const create = new RegExp(String.raw`\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(${QNAME})`, "i").exec(st);
      if (create) {
        const f: FunctionFacts = {
          name: qualify(create[1]),
          securityDefiner: /\bSECURITY\s+DEFINER\b/i.test(st),
          pinsSearchPath: /\bSET\s+search_path\s*(=|\bTO\b)/i.test(st),
          revokedFromPublic: false,
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
          if (/\bSET\s+search_path\s*(=|\bTO\b)/i.test(st)) f.pinsSearchPath = true;
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
          if (verb.toUpperCase() === "REVOKE" && roles.includes("public")) f.revokedFromPublic = true;
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

export function securityDefinerProblems(r: Pick<Res, "props" | "name">): string[] {
  const p = r.props;
  const sql = typeof p.sql === "string" ? p.sql : "";
  const where = `${p.kind} ${p.objectName ?? r.name}${p.sqlFile ? ` (sql/${p.sqlFile})` : ""}`;
  const out: string[] = [];
  const definers = analyzeFunctions(sql).filter((f) => f.securityDefiner);
  for (const f of definers) {
    if (!f.pinsSearchPath) out.push(`${where}: SECURITY DEFINER function ${f.name} does not pin search_path (add SET search_path = ... to its definition)`);
    if (!f.revokedFromPublic) out.push(`${where}: SECURITY DEFINER function ${f.name} stays executable by PUBLIC (no REVOKE EXECUTE ... FROM PUBLIC after its CREATE)`);
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
