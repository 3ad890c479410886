/**
 * PostgreSQL's own parser (libpg-query: the server's grammar compiled to WebAssembly, no native build, no install
 * script), and the few AST readers the function and policy metadata and the policy pack share.
 *
 * Loading: the WebAssembly module loads asynchronously, once per process (~25 ms, docs/sql-parser.md). Every reader
 * here is synchronous after that, so component constructors can use them; an entry point awaits `loadSqlParser()`
 * before it declares resources (index.ts main, the test programs, the policy pack's validators, test files'
 * beforeAll). A reader called earlier throws an error that says so.
 *
 * What "executed statements" means here: the statements a SQL text runs when applied, in order: its top-level
 * statements and, inside DO blocks (PL/pgSQL, read with PostgreSQL's PL/pgSQL parser), their static SQL statements and
 * the constant strings they EXECUTE. Function bodies are not executed by applying a file and are not read. SQL built
 * at run time (EXECUTE format(...), EXECUTE 'a' || b, a DO block in another language) cannot be read: it is listed
 * as unreadable, with its text, for the caller to judge.
 */
import * as libpg from "libpg-query";
import type { A_Const, Node, RawStmt, RoleSpec, TypeName, VariableSetStmt } from "libpg-query";

export type { Node, RawStmt } from "libpg-query";

/** Loads the parser (once per process; later calls return at once). */
export async function loadSqlParser(): Promise<void> {
  await libpg.loadModule();
}

/** A SQL text PostgreSQL's grammar refuses, with the line and column (1-based) where it stopped. */
export class SqlParseError extends Error {
  constructor(
    readonly reason: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(line ? `${reason} (line ${line}, column ${column})` : reason);
    this.name = "SqlParseError";
  }
}

function notLoaded(e: unknown): never {
  if (e instanceof Error && /not initialized|loadModule/.test(e.message)) {
    throw new Error(
      "the SQL parser is not loaded yet: await loadSqlParser() (lib/pgsql.ts) once before reading SQL, e.g. at the start of the program or in the test's beforeAll",
    );
  }
  throw e;
}

function lineColumn(text: string, charOffset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, charOffset)).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

/** The statements of a SQL text as PostgreSQL parses them; [] for a text with no statement (empty, comments only). */
export function parseSql(sql: string): RawStmt[] {
  if (!sql.trim()) return [];
  try {
    return libpg.parseSync(sql).stmts ?? [];
  } catch (e: any) {
    if (e instanceof libpg.SqlError) {
      const at = e.sqlDetails?.cursorPosition;
      const lc = at !== undefined && at >= 0 ? lineColumn(sql, at) : undefined;
      throw new SqlParseError(e.message, lc?.line, lc?.column);
    }
    notLoaded(e);
  }
}

/** The PL/pgSQL tree of a function or DO body (the text between the dollar quotes). */
function parsePlpgsqlBody(body: string): unknown {
  let tag = "guardian_body";
  while (body.includes(`$${tag}$`)) tag += "_";
  const wrapper = `CREATE FUNCTION pg_temp.guardian_do_block() RETURNS void LANGUAGE plpgsql AS $${tag}$${body}$${tag}$`;
  try {
    return libpg.parsePlPgSQLSync(wrapper);
  } catch (e: any) {
    if (e instanceof Error && !/not initialized|loadModule/.test(e.message)) throw new SqlParseError(`PL/pgSQL: ${e.message}`);
    notLoaded(e);
  }
}

/** The node's type name and its fields: { CreateFunctionStmt: {...} } -> ["CreateFunctionStmt", {...}]. */
export function unwrap(node: Node | undefined): [string, any] {
  if (!node) return ["", {}];
  const [k] = Object.keys(node);
  return [k, (node as any)[k] ?? {}];
}

/** A statement a SQL text executes, and where it was found. */
export interface ExecutedStatement {
  /** The node's type, e.g. "CreateFunctionStmt", "GrantStmt", "DoStmt". */
  type: string;
  /** Its fields (absent fields are PostgreSQL's defaults: false, 0, "", empty list). */
  stmt: any;
  /** "sql" at top level; "do" a static statement of a DO block; "execute" a constant string EXECUTEd in a DO block. */
  via: "sql" | "do" | "execute";
  /** 1-based line of the top-level statement it belongs to (for a DO block's statements: the DO's line). */
  line: number;
}

/** SQL the text builds at run time, which no reader can see before it runs. */
export interface UnreadableSql {
  line: number;
  /** What is run: the EXECUTE expression (e.g. "format('DROP POLICY %I ON t', p.policyname)") or "DO LANGUAGE plv8". */
  text: string;
}

export interface ExecutedSql {
  statements: ExecutedStatement[];
  unreadable: UnreadableSql[];
}

/** The byte offset of a statement's first word: a statement's location includes the blanks and comments before it. */
function firstWord(b: Buffer, at: number): number {
  for (;;) {
    while (at < b.length && (b[at] === 0x20 || (b[at] >= 0x09 && b[at] <= 0x0d))) at++;
    if (b[at] === 0x2d && b[at + 1] === 0x2d) {
      while (at < b.length && b[at] !== 0x0a) at++;
    } else if (b[at] === 0x2f && b[at + 1] === 0x2a) {
      let depth = 1;
      at += 2;
      while (at < b.length && depth > 0) {
        if (b[at] === 0x2f && b[at + 1] === 0x2a) {
          depth++;
          at += 2;
        } else if (b[at] === 0x2a && b[at + 1] === 0x2f) {
          depth--;
          at += 2;
        } else at++;
      }
    } else return at;
  }
}

/** The string value of a constant expression (a literal, maybe cast), or undefined when it is not one. */
function constantString(expr: string): string | undefined {
  let stmts: RawStmt[];
  try {
    stmts = parseSql(`SELECT ${expr}`);
  } catch {
    return undefined;
  }
  if (stmts.length !== 1) return undefined;
  const [type, sel] = unwrap(stmts[0].stmt);
  if (type !== "SelectStmt" || sel.targetList?.length !== 1 || sel.fromClause) return undefined;
  let [t, v] = unwrap(sel.targetList[0].ResTarget?.val);
  while (t === "TypeCast") [t, v] = unwrap(v.arg);
  return t === "A_Const" && v.sval ? (v.sval.sval ?? "") : undefined;
}

/**
 * Every statement a SQL text executes when applied, in order (see the module comment), and the SQL it builds at run
 * time. Throws SqlParseError when the text, or a DO block in it, does not parse.
 */
export function executedStatements(sql: string): ExecutedSql {
  const out: ExecutedSql = { statements: [], unreadable: [] };
  const bytes = Buffer.from(sql, "utf8");
  const lineOf = (byteOffset: number) => lineColumn(sql, bytes.subarray(0, byteOffset).toString("utf8").length).line;

  const visit = (text: string, via: ExecutedStatement["via"], line: number | undefined) => {
    const b = via === "sql" ? bytes : Buffer.from(text, "utf8");
    for (const raw of parseSql(text)) {
      const where = line ?? lineOf(firstWord(b, raw.stmt_location ?? 0));
      const [type, stmt] = unwrap(raw.stmt);
      out.statements.push({ type, stmt, via, line: where });
      if (type === "DoStmt") doBlock(stmt, where);
    }
  };

  const doBlock = (stmt: any, line: number) => {
    const opts = (stmt.args ?? []).map((a: Node) => unwrap(a)[1]);
    const language = opts.find((o: any) => o.defname === "language")?.arg?.String?.sval ?? "plpgsql";
    const body: string = opts.find((o: any) => o.defname === "as")?.arg?.String?.sval ?? "";
    if (language !== "plpgsql") {
      out.unreadable.push({ line, text: `DO LANGUAGE ${language}` });
      return;
    }
    walkPlpgsql(parsePlpgsqlBody(body), line);
  };

  // The PL/pgSQL tree, in source order: static SQL statements are parsed and visited; EXECUTE of a constant string
  // is visited as SQL; any other EXECUTE is unreadable.
  const walkPlpgsql = (node: unknown, line: number): void => {
    if (Array.isArray(node)) {
      for (const n of node) walkPlpgsql(n, line);
      return;
    }
    if (!node || typeof node !== "object") return;
    for (const [k, v] of Object.entries(node as Record<string, any>)) {
      if (k === "PLpgSQL_stmt_execsql") {
        visit(v.sqlstmt?.PLpgSQL_expr?.query ?? "", "do", line);
      } else if (
        k === "PLpgSQL_stmt_dynexecute" ||
        k === "PLpgSQL_stmt_dynfors" ||
        ((k === "PLpgSQL_stmt_return_query" || k === "PLpgSQL_stmt_open") && v.dynquery)
      ) {
        const expr: string = (k === "PLpgSQL_stmt_dynexecute" || k === "PLpgSQL_stmt_dynfors" ? v.query : v.dynquery)?.PLpgSQL_expr?.query ?? "";
        const constant = constantString(expr);
        if (constant !== undefined) visit(constant, "execute", line);
        else out.unreadable.push({ line, text: `EXECUTE ${expr}` });
        walkPlpgsql(v.body, line);
      } else walkPlpgsql(v, line);
    }
  };

  visit(sql, "sql", undefined);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Readers of AST pieces
// ---------------------------------------------------------------------------------------------------------------

/** The strings of a name list: [String "public", String "f"] -> ["public", "f"] (case as PostgreSQL folded it). */
export function nameParts(nodes: Node[] | undefined): string[] {
  return (nodes ?? []).map((n) => unwrap(n)[1].sval ?? "");
}

/** A name as SQL would write it: "public.f", "\"My Schema\".\"F g\"". */
export function showName(parts: string[]): string {
  return parts.map(quoteIdent).join(".");
}

const KEYWORD_CACHE = new Map<string, boolean>();
/** A word PostgreSQL's quote_ident quotes: one that is not a single identifier or unreserved keyword. */
function isKeyword(word: string): boolean {
  let k = KEYWORD_CACHE.get(word);
  if (k === undefined) {
    try {
      const tokens = libpg.scanSync(word).tokens ?? [];
      k = tokens.length !== 1 || tokens[0].keywordKind > 1;
    } catch (e) {
      notLoaded(e);
    }
    KEYWORD_CACHE.set(word, k);
  }
  return k;
}

/** An identifier as PostgreSQL's quote_ident writes it: bare when it can be, else double-quoted. */
export function quoteIdent(id: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(id) && !isKeyword(id) ? id : `"${id.replace(/"/g, '""')}"`;
}

/** PostgreSQL's internal type names (pg_catalog.int4) as format_type() shows them. */
const TYPE_NAMES: Record<string, string> = {
  int2: "smallint",
  int4: "integer",
  int8: "bigint",
  float4: "real",
  float8: "double precision",
  bool: "boolean",
  varchar: "character varying",
  bpchar: "character",
  timestamptz: "timestamp with time zone",
  timestamp: "timestamp without time zone",
  timetz: "time with time zone",
  time: "time without time zone",
  varbit: "bit varying",
};

/**
 * A type as a signature names it (what to_regprocedure() reads and regprocedure prints): built-in names as
 * format_type() shows them (int -> integer, varchar(10) -> character varying: type modifiers are not part of a
 * signature), other names as written, arrays with [].
 */
export function typeName(t: TypeName | undefined): string {
  const parts = nameParts(t?.names);
  const builtin = parts.length === 1 || (parts.length === 2 && parts[0] === "pg_catalog");
  const last = parts[parts.length - 1] ?? "";
  let name = builtin && TYPE_NAMES[last] ? TYPE_NAMES[last] : builtin && parts.length === 2 ? last : showName(parts);
  if (t?.pct_type) name += "%TYPE";
  if (t?.setof) name = `SETOF ${name}`;
  return name + "[]".repeat(t?.arrayBounds?.length ?? 0);
}

/** A grantee: "PUBLIC", "CURRENT_USER", ... or the role's name (unquoted names folded to lower case). */
export function roleName(r: RoleSpec | undefined): string {
  switch (r?.roletype) {
    case "ROLESPEC_PUBLIC":
      return "PUBLIC";
    case "ROLESPEC_CURRENT_USER":
      return "CURRENT_USER";
    case "ROLESPEC_CURRENT_ROLE":
      return "CURRENT_ROLE";
    case "ROLESPEC_SESSION_USER":
      return "SESSION_USER";
    default:
      return r?.rolename ?? "";
  }
}

/**
 * The schemas a `SET search_path ...` sets, one per element as PostgreSQL stores them (identifiers and string
 * literals alike become names: pg_catalog, 'pg_temp' -> ["pg_catalog", "pg_temp"]; '' -> [""]). null for RESET, DEFAULT
 * and FROM CURRENT (not a list this text states).
 */
export function settingValues(v: VariableSetStmt): string[] | null {
  if (v.kind !== "VAR_SET_VALUE") return null;
  const out: string[] = [];
  for (const a of v.args ?? []) {
    const [t, c] = unwrap(a) as [string, A_Const];
    if (t !== "A_Const" || !c.sval) return null;
    out.push(c.sval.sval ?? "");
  }
  return out;
}

/** A search_path as SQL (the elements, names bare where they can be, others as string literals): "pg_catalog, pg_temp", "''". */
export function showSearchPathSql(path: string[]): string {
  return path.map((x) => (/^[a-z_][a-z0-9_$]*$/.test(x) && !isKeyword(x) ? x : `'${x.replace(/'/g, "''")}'`)).join(", ");
}
