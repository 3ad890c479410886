/**
 * Facts about the functions a SQL file defines, read with PostgreSQL's own parser (lib/pgsql.ts), for the policy pack
 * and the components (docs/architecture.md: a function's `meta` is `{ securityDefiner, searchPath, executeRoles }`).
 *
 * Read: CREATE [OR REPLACE] FUNCTION | PROCEDURE (SECURITY DEFINER | INVOKER, SET search_path, in any clause order),
 * ALTER FUNCTION | ROUTINE | PROCEDURE ... SECURITY, SET search_path, RESET search_path | ALL, and GRANT / REVOKE
 * EXECUTE | ALL ON FUNCTION | ROUTINE | PROCEDURE <signature> or ON ALL FUNCTIONS | ROUTINES | PROCEDURES IN SCHEMA.
 * Statements are read in the order they run, DO blocks included (lib/pgsql.ts executedStatements); comments, strings
 * and function bodies are not statements and never count.
 *
 * executeRoles models PostgreSQL's defaults: a new function is executable by PUBLIC until a REVOKE says otherwise;
 * CREATE OR REPLACE keeps the privileges; REVOKE GRANT OPTION FOR takes the grant option only, not EXECUTE. Default
 * privileges set with ALTER DEFAULT PRIVILEGES (Supabase grants new functions to anon, authenticated and
 * service_role) are not visible in a file; our files revoke from anon explicitly, and the live probe (functionProbe)
 * fingerprints the real ACL.
 *
 * Names: unquoted identifiers fold to lower case, quoted ones keep their case and are shown quoted
 * ("Reports"."Monthly Sum"(integer)). A function or type written without a schema is taken as public when matching a
 * GRANT, REVOKE or ALTER to a CREATE (public.f(uuid) and f(uuid) are one function).
 */
import {
  executedStatements,
  type Node,
  nameParts,
  parseSql,
  type RawStmt,
  roleName,
  settingValues,
  showName,
  showSearchPathSql,
  typeName,
  unwrap,
} from "./pgsql";

export interface FunctionMeta {
  securityDefiner: boolean;
  /**
   * The pinned search_path as SQL, one element per schema (names bare where they can be, others as string literals):
   * "pg_catalog, pg_temp", "''" for the empty path; "FROM CURRENT" when the creator's path is copied; null if unpinned
   * (or SET ... TO DEFAULT, or RESET).
   */
  searchPath: string | null;
  /** Roles with EXECUTE after the file ran, sorted; "PUBLIC" for everyone. */
  executeRoles: string[];
}

export interface FunctionDefinition {
  /** Qualified name and argument types, as to_regprocedure() takes it: "public.f(uuid,text,integer,text)". */
  signature: string;
  meta: FunctionMeta;
}

/** One CREATE FUNCTION of a SQL text and what the statements after it did to the function. */
export interface CreatedFunction {
  /** The name as written (quoted where it must be): "public.f", "f", "\"My Schema\".\"F g\"". */
  name: string;
  /** The name with the schema, public when none is written. */
  qualifiedName: string;
  /** Its schema, public when none is written (as PostgreSQL folded it, unquoted). */
  schema: string;
  /** name(argument types), argument types as a signature names them (OUT arguments left out). */
  signature: string;
  /** What GRANT, REVOKE and ALTER are matched on: qualifiedName(types), public. left off types. */
  key: string;
  procedure: boolean;
  securityDefiner: boolean;
  /** A SET search_path clause is in force (SET ... FROM CURRENT included; TO DEFAULT and RESET are not pins). */
  pinsSearchPath: boolean;
  /** The pinned schemas, one per element as PostgreSQL stores them ('' -> [""]); null when unpinned or FROM CURRENT. */
  searchPath: string[] | null;
  /** Roles with EXECUTE now ("PUBLIC" for everyone). */
  executeRoles: Set<string>;
  /** Roles a REVOKE of EXECUTE (or ALL) named explicitly after this CREATE. */
  revokedFrom: Set<string>;
  /** Roles a GRANT of EXECUTE (or ALL) named after this CREATE and no later REVOKE took back, in order. */
  grantedTo: string[];
  /** The line of its CREATE (of the DO block holding it). */
  line: number;
}

const FUNCTION_OBJECTS = new Set(["OBJECT_FUNCTION", "OBJECT_ROUTINE", "OBJECT_PROCEDURE"]);

/** "f(uuid)" of a parameter list: argument types in order, OUT and TABLE columns left out (they are not the signature). */
function argumentTypes(params: Node[] | undefined): string[] {
  return (params ?? [])
    .map((p) => unwrap(p)[1])
    .filter((p) => p.mode !== "FUNC_PARAM_OUT" && p.mode !== "FUNC_PARAM_TABLE")
    .map((p) => typeName(p.argType));
}

const typeKey = (t: string) => t.replace(/^public\./, "");
const qualify = (parts: string[]) => (parts.length === 1 ? ["public", ...parts] : parts);
const keyOf = (parts: string[], types: string[]) => `${showName(qualify(parts))}(${types.map(typeKey).join(",")})`;

/** The options of a CREATE FUNCTION or ALTER FUNCTION (DefElem list) applied to a function's facts. */
function applyOptions(f: CreatedFunction, options: Node[] | undefined): void {
  for (const o of options ?? []) {
    const d = unwrap(o)[1];
    if (d.defname === "security") f.securityDefiner = d.arg?.Boolean?.boolval === true;
    if (d.defname !== "set") continue;
    const v = d.arg?.VariableSetStmt ?? {};
    const name = String(v.name ?? "").toLowerCase();
    if (v.kind === "VAR_RESET_ALL" || (name === "search_path" && (v.kind === "VAR_RESET" || v.kind === "VAR_SET_DEFAULT"))) {
      f.pinsSearchPath = false;
      f.searchPath = null;
    } else if (name === "search_path") {
      f.pinsSearchPath = true;
      f.searchPath = settingValues(v); // null for FROM CURRENT
    }
  }
}

/**
 * Every function the SQL creates, one entry per CREATE in the order they run, with what the statements after it did:
 * options changed by ALTER, EXECUTE granted and revoked. Throws SqlParseError when the SQL does not parse.
 */
export function createdFunctions(sql: string): CreatedFunction[] {
  const created: CreatedFunction[] = [];
  const { statements } = executedStatements(sql);
  for (const { type, stmt, line } of statements) {
    if (type === "CreateFunctionStmt") {
      const parts = nameParts(stmt.funcname);
      const types = argumentTypes(stmt.parameters);
      const key = keyOf(parts, types);
      const earlier = [...created].reverse().find((f) => f.key === key);
      const f: CreatedFunction = {
        name: showName(parts),
        qualifiedName: showName(qualify(parts)),
        schema: qualify(parts)[qualify(parts).length - 2] ?? "public",
        signature: `${showName(parts)}(${types.join(",")})`,
        key,
        procedure: stmt.is_procedure === true,
        securityDefiner: false,
        pinsSearchPath: false,
        searchPath: null,
        // CREATE OR REPLACE keeps the function's privileges; a new function starts with PUBLIC's EXECUTE.
        executeRoles: new Set(earlier ? earlier.executeRoles : ["PUBLIC"]),
        revokedFrom: new Set(),
        grantedTo: [],
        line,
      };
      applyOptions(f, stmt.options);
      created.push(f);
    } else if (type === "AlterFunctionStmt") {
      for (const f of matching(created, stmt.func, stmt.objtype)) applyOptions(f, stmt.actions);
    } else if (type === "GrantStmt" && FUNCTION_OBJECTS.has(stmt.objtype)) {
      const privileges = (stmt.privileges ?? []).map((p: Node) => unwrap(p)[1].priv_name);
      if (privileges.length > 0 && !privileges.includes("execute") && !privileges.includes("all")) continue;
      const grant = stmt.is_grant === true;
      if (!grant && stmt.grant_option === true) continue; // REVOKE GRANT OPTION FOR: EXECUTE itself stays
      const roles: string[] = (stmt.grantees ?? []).map((g: Node) => roleName(unwrap(g)[1]));
      const targets: CreatedFunction[] =
        stmt.targtype === "ACL_TARGET_ALL_IN_SCHEMA"
          ? inSchemas(created, nameParts(stmt.objects), stmt.objtype)
          : (stmt.objects ?? []).flatMap((o: Node) => matching(created, unwrap(o)[1], stmt.objtype));
      for (const f of new Set(targets)) {
        for (const r of roles) {
          if (grant) {
            f.executeRoles.add(r);
            if (!f.grantedTo.includes(r)) f.grantedTo.push(r);
          } else {
            f.executeRoles.delete(r);
            f.revokedFrom.add(r);
            f.grantedTo = f.grantedTo.filter((g) => g !== r);
          }
        }
      }
    }
  }
  return created;
}

/** The created functions an ObjectWithArgs names: by signature, or by name alone when written without arguments. */
function matching(created: CreatedFunction[], obj: any, objtype: string): CreatedFunction[] {
  const parts = nameParts(obj?.objname);
  const kinds = (f: CreatedFunction) => objtype !== "OBJECT_PROCEDURE" || f.procedure;
  if (obj?.args_unspecified) {
    const name = showName(qualify(parts));
    return created.filter((f) => f.qualifiedName === name && kinds(f));
  }
  const key = keyOf(
    parts,
    (obj?.objargs ?? []).map((t: Node) => typeName(unwrap(t)[1])),
  );
  return created.filter((f) => f.key === key && kinds(f));
}

/** ON ALL FUNCTIONS | PROCEDURES | ROUTINES IN SCHEMA s: the created functions of those schemas, of that kind. */
function inSchemas(created: CreatedFunction[], schemas: string[], objtype: string): CreatedFunction[] {
  const wanted = new Set(schemas);
  return created.filter((f) => (objtype === "OBJECT_ROUTINE" || (objtype === "OBJECT_PROCEDURE") === f.procedure) && wanted.has(f.schema));
}

/** The functions a SQL text creates, with their facts after every statement in the text (the last CREATE of each). */
export function functionDefinitions(sql: string): FunctionDefinition[] {
  const last = new Map<string, CreatedFunction>();
  for (const f of createdFunctions(sql)) {
    last.delete(f.key); // keep first-seen order of the last definition
    last.set(f.key, f);
  }
  return [...last.values()].map((f) => ({
    signature: f.signature,
    meta: {
      securityDefiner: f.securityDefiner,
      searchPath: f.searchPath ? showSearchPathSql(f.searchPath) : f.pinsSearchPath ? "FROM CURRENT" : null,
      executeRoles: [...f.executeRoles].sort(),
    },
  }));
}

/** The facts of one function the text defines; throws naming the function when the text does not define it. */
export function functionMeta(sql: string, signature: string): FunctionMeta {
  const want = normaliseSignature(signature);
  const defs = functionDefinitions(sql);
  const d = defs.find((x) => x.signature === want) ?? defs.find((x) => keyOfSignature(x.signature) === keyOfSignature(want));
  if (!d) {
    const found = defs.map((x) => `"${x.signature}"`).join(", ") || "none";
    throw new Error(`function "${want}" is not defined by this SQL (defines: ${found})`);
  }
  return d.meta;
}

/** The ObjectWithArgs of a signature written as SQL ("public.f(uuid, int)"), read by the parser. */
function signatureObject(signature: string): any {
  let stmts: RawStmt[];
  try {
    stmts = parseSql(`DROP FUNCTION ${signature}`);
  } catch {
    stmts = [];
  }
  const [type, drop] = stmts.length === 1 ? unwrap(stmts[0].stmt) : ["", {}];
  if (type !== "DropStmt" || drop.objects?.length !== 1) throw new Error(`not a function signature: "${signature}"`);
  return unwrap(drop.objects[0])[1];
}

function keyOfSignature(signature: string): string {
  const o = signatureObject(signature);
  return keyOf(
    nameParts(o.objname),
    (o.objargs ?? []).map((t: Node) => typeName(unwrap(t)[1])),
  );
}

/** "public.F(uuid, text, int)" -> "public.f(uuid,text,integer)". */
export function normaliseSignature(signature: string): string {
  const o = signatureObject(signature);
  return `${showName(nameParts(o.objname))}(${(o.objargs ?? []).map((t: Node) => typeName(unwrap(t)[1])).join(",")})`;
}

/** "p_quantity integer DEFAULT 1" -> "integer"; "IN p uuid" -> "uuid"; "text" -> "text"; "int" -> "integer". */
export function argumentType(arg: string): string {
  let stmts: RawStmt[];
  try {
    stmts = parseSql(`CREATE FUNCTION pg_temp.f(${arg}) RETURNS void LANGUAGE sql AS ''`);
  } catch {
    stmts = [];
  }
  const [type, create] = stmts.length === 1 ? unwrap(stmts[0].stmt) : ["", {}];
  if (type !== "CreateFunctionStmt" || create.parameters?.length !== 1) throw new Error(`not one function argument: "${arg}"`);
  return typeName(unwrap(create.parameters[0])[1].argType);
}
