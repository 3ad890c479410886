/**
 * Facts about a function read from the SQL file that defines it, for the policy pack (docs/architecture.md: a
 * function's `meta` is `{ securityDefiner, searchPath, executeRoles }`). A small, pure reader, not a SQL parser: it
 * understands what our function files contain (CREATE [OR REPLACE] FUNCTION, GRANT / REVOKE ... ON FUNCTION), with
 * comments, string literals and dollar-quoted bodies skipped, so text inside a function body never counts.
 *
 * executeRoles models PostgreSQL's defaults: a new function is executable by PUBLIC until a REVOKE says otherwise.
 * Default privileges set with ALTER DEFAULT PRIVILEGES (Supabase grants new functions to anon, authenticated and
 * service_role) are not visible in a file; our files revoke from anon explicitly, and the live probe
 * (functionProbe) fingerprints the real ACL.
 */

export interface FunctionMeta {
  securityDefiner: boolean;
  /** The pinned search_path as written after `SET search_path =` (e.g. "''" or "pg_catalog, public"); null if unpinned. */
  searchPath: string | null;
  /** Roles with EXECUTE after the file ran, sorted; "PUBLIC" for everyone. */
  executeRoles: string[];
}

export interface FunctionDefinition {
  /** Qualified name and argument types, as to_regprocedure() takes it: "public.f(uuid,text,integer,text)". */
  signature: string;
  meta: FunctionMeta;
}

/** The statements of a SQL text with comments removed and every dollar-quoted string replaced by `$$`. */
export function sqlStatements(sql: string): string[] {
  const out: string[] = [];
  let cur = "";
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i];
    const next = sql[i + 1];
    if (ch === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? sql.length : end;
      continue;
    }
    if (ch === "/" && next === "*") {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === "/" && sql[i + 1] === "*") { depth++; i += 2; }
        else if (sql[i] === "*" && sql[i + 1] === "/") { depth--; i += 2; }
        else i++;
      }
      cur += " ";
      continue;
    }
    if (ch === "'" || ch === '"') {
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === ch && sql[j + 1] === ch) j += 2;
        else if (sql[j] === ch) break;
        else j++;
      }
      cur += sql.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (ch === "$") {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (m && !/[A-Za-z0-9_]/.test(sql[i - 1] ?? "")) {
        const end = sql.indexOf(m[0], i + m[0].length);
        i = end < 0 ? sql.length : end + m[0].length;
        cur += "$$";
        continue;
      }
    }
    if (ch === ";") {
      if (cur.trim()) out.push(cur.replace(/\s+/g, " ").trim());
      cur = "";
      i++;
      continue;
    }
    cur += ch;
    i++;
  }
  if (cur.trim()) out.push(cur.replace(/\s+/g, " ").trim());
  return out;
}

/** Splits on commas outside parentheses and quotes. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  let quote: string | null = null;
  for (const ch of s) {
    if (quote) {
      cur += ch;
      if (ch === quote) quote = null;
      continue;
    }
    if (ch === "'" || ch === '"') quote = ch;
    else if (ch === "(") depth++;
    else if (ch === ")") depth--;
    else if (ch === "," && depth === 0) {
      parts.push(cur.trim());
      cur = "";
      continue;
    }
    cur += ch;
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts;
}

const TYPE_ALIASES: Record<string, string> = {
  int: "integer", int4: "integer", int8: "bigint", int2: "smallint", bool: "boolean", float8: "double precision",
  float4: "real", varchar: "character varying", timestamptz: "timestamp with time zone", decimal: "numeric",
};
/** Words that start a type name, so an argument starting with one has no parameter name. */
const TYPE_STARTS = new Set(["double", "character", "timestamp", "time", "bit", "interval", "national"]);

/** "p_quantity integer DEFAULT 1" -> "integer"; "IN p uuid" -> "uuid"; "text" -> "text". */
export function argumentType(arg: string): string {
  let a = arg.replace(/\s+(DEFAULT\b|=).*$/i, "").trim();
  a = a.replace(/^(IN|OUT|INOUT|VARIADIC)\s+/i, "");
  const words = a.split(/\s+/);
  if (words.length > 1 && !TYPE_STARTS.has(words[0].toLowerCase())) words.shift();
  const t = words.join(" ").toLowerCase().replace(/\s*\(\s*/g, "(").replace(/\s*,\s*/g, ",").replace(/\s*\)/g, ")");
  return TYPE_ALIASES[t] ?? t;
}

/** An identifier as PostgreSQL folds it: unquoted lower-cased, quoted kept as written. */
function identifier(id: string): string {
  const q = /^"(.*)"$/.exec(id.trim());
  return q ? q[1].replace(/""/g, '"') : id.trim().toLowerCase();
}

function normaliseName(name: string): string {
  return (name.match(/"(?:[^"]|"")*"|[^.]+/g) ?? []).map(identifier).join(".");
}

/** "public.f(uuid, text)" or "public.f(a uuid DEFAULT NULL)" -> "public.f(uuid,text)". */
function signatureOf(name: string, args: string): string {
  const types = splitTopLevel(args).filter((x) => !/^OUT\s/i.test(x)).map(argumentType);
  return `${normaliseName(name)}(${types.join(",")})`;
}

function roleList(s: string): string[] {
  return splitTopLevel(s).map((r) => {
    const x = r.replace(/^GROUP\s+/i, "");
    return x.toUpperCase() === "PUBLIC" ? "PUBLIC" : identifier(x);
  });
}

const NAME = String.raw`((?:"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)(?:\.(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*))?)`;
const CREATE_RE = new RegExp(String.raw`^CREATE (?:OR REPLACE )?FUNCTION ${NAME}\s*\((.*?)\)\s*(RETURNS\b.*)$`, "i");
const GRANT_RE = new RegExp(String.raw`^GRANT (?:EXECUTE|ALL(?: PRIVILEGES)?) ON FUNCTION (.+?) TO (.+?)(?: WITH GRANT OPTION)?(?: GRANTED BY .+)?$`, "i");
const REVOKE_RE = new RegExp(String.raw`^REVOKE (?:GRANT OPTION FOR )?(?:EXECUTE|ALL(?: PRIVILEGES)?) ON FUNCTION (.+?) FROM (.+?)(?: GRANTED BY .+)?(?: CASCADE| RESTRICT)?$`, "i");
const FUNC_REF_RE = new RegExp(String.raw`^${NAME}\s*\((.*)\)$`);

/** The functions a SQL text creates, with their facts after every GRANT and REVOKE in the text. */
export function functionDefinitions(sql: string): FunctionDefinition[] {
  const defs = new Map<string, FunctionDefinition>();
  const acl = new Map<string, Set<string>>();
  for (const stmt of sqlStatements(sql)) {
    const c = CREATE_RE.exec(stmt);
    if (c) {
      const signature = signatureOf(c[1], c[2]);
      const rest = c[3];
      // The search_path value runs until the next clause keyword (or the end): SET search_path = '' AS $$ ...
      const sp = /\bSET search_path\s*(?:=|TO)\s*(.+?)(?=\s+(?:AS|LANGUAGE|SECURITY|SET|STABLE|IMMUTABLE|VOLATILE|STRICT|CALLED|RETURNS|PARALLEL|COST|ROWS|LEAKPROOF|NOT|EXTERNAL|WINDOW|SUPPORT|TRANSFORM)\b|$)/i.exec(rest);
      defs.set(signature, {
        signature,
        meta: {
          securityDefiner: /\bSECURITY DEFINER\b/i.test(rest),
          searchPath: sp ? sp[1].trim() : null,
          executeRoles: [],
        },
      });
      if (!acl.has(signature)) acl.set(signature, new Set(["PUBLIC"]));
      continue;
    }
    const g = GRANT_RE.exec(stmt) ?? REVOKE_RE.exec(stmt);
    if (!g) continue;
    const grant = /^GRANT/i.test(stmt);
    for (const ref of splitTopLevel(g[1])) {
      const f = FUNC_REF_RE.exec(ref.trim());
      if (!f) continue;
      const set = acl.get(signatureOf(f[1], f[2]));
      if (!set) continue; // an ACL on a function this file does not define
      for (const r of roleList(g[2])) (grant ? set.add(r) : set.delete(r));
    }
  }
  return [...defs.values()].map((d) => ({ ...d, meta: { ...d.meta, executeRoles: [...acl.get(d.signature)!].sort() } }));
}

/** The facts of one function the text defines; throws naming the function when the text does not define it. */
export function functionMeta(sql: string, signature: string): FunctionMeta {
  const want = normaliseSignature(signature);
  const d = functionDefinitions(sql).find((x) => x.signature === want);
  if (!d) {
    const found = functionDefinitions(sql).map((x) => `"${x.signature}"`).join(", ") || "none";
    throw new Error(`function "${want}" is not defined by this SQL (defines: ${found})`);
  }
  return d.meta;
}

/** "public.F(uuid, text, int)" -> "public.f(uuid,text,integer)". */
export function normaliseSignature(signature: string): string {
  const f = FUNC_REF_RE.exec(signature.trim());
  if (!f) throw new Error(`not a function signature: "${signature}"`);
  return signatureOf(f[1], f[2]);
}
