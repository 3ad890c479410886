/**
 * The facts the policy pack gets about each function (securityDefiner, searchPath, executeRoles), read from the SQL.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { CREDIT_FUNCTIONS, functionSpecMeta } from "../../components/creditFunctions";
import { argumentType, functionDefinitions, functionMeta, normaliseSignature } from "../../lib/functionMeta";
import { executedStatements, loadSqlParser } from "../../lib/pgsql";

beforeAll(loadSqlParser);

describe("the credit functions' facts, read from their files", () => {
  it("v2 and the batch are SECURITY DEFINER, pin search_path, and only authenticated and service_role may execute them", () => {
    const facts = Object.fromEntries(CREDIT_FUNCTIONS.map((f) => [f.signature, functionSpecMeta(f)]));
    expect(facts).toEqual({
      "guardian.may_consume_for(uuid)": { securityDefiner: false, searchPath: "pg_catalog, pg_temp", executeRoles: [] },
      "guardian.consume_debit(uuid,json,bigint,bigint,bigint,bigint,bigint,text,text,integer)": {
        securityDefiner: false,
        searchPath: "pg_catalog, pg_temp",
        executeRoles: [],
      },
      "public.consume_credits_rpc(uuid,text,integer,text)": {
        securityDefiner: true,
        searchPath: "pg_catalog, pg_temp",
        executeRoles: ["authenticated", "service_role"],
      },
      "public.consume_credits_batch(uuid,jsonb)": { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: ["authenticated", "service_role"] },
    });
  });
});

describe("functionDefinitions", () => {
  it("leaves PUBLIC's default EXECUTE in place when the file does not revoke it", () => {
    const sql = `CREATE FUNCTION public.f(a int) RETURNS int LANGUAGE sql AS $$ SELECT a $$;
                 GRANT EXECUTE ON FUNCTION public.f(integer) TO anon;`;
    expect(functionDefinitions(sql)).toEqual([
      { signature: "public.f(integer)", meta: { securityDefiner: false, searchPath: null, executeRoles: ["PUBLIC", "anon"] } },
    ]);
  });

  it("ignores grants, comments and clauses written inside a function body or a comment", () => {
    const sql = `-- GRANT EXECUTE ON FUNCTION public.g() TO anon;
      CREATE OR REPLACE FUNCTION public.g() RETURNS void LANGUAGE plpgsql
      SET search_path = pg_catalog, public
      AS $body$ BEGIN EXECUTE 'GRANT EXECUTE ON FUNCTION public.g() TO anon'; /* SECURITY DEFINER */ END $body$;
      /* GRANT ALL ON FUNCTION public.g() TO anon; */
      REVOKE ALL ON FUNCTION public.g() FROM PUBLIC;`;
    expect(functionMeta(sql, "public.g()")).toEqual({ securityDefiner: false, searchPath: "pg_catalog, public", executeRoles: [] });
  });

  it("applies grants and revokes in order, to the overload they name", () => {
    const sql = `CREATE FUNCTION s.h(x text) RETURNS json SECURITY DEFINER LANGUAGE sql AS 'select null::json';
      CREATE FUNCTION s.h(x text, y integer DEFAULT 1) RETURNS json LANGUAGE sql SECURITY DEFINER SET search_path TO '' AS 'select null::json';
      REVOKE ALL ON FUNCTION s.h(text) FROM PUBLIC;
      REVOKE EXECUTE ON FUNCTION s.h(text, int) FROM PUBLIC, anon;
      GRANT EXECUTE ON FUNCTION s.h(text, integer) TO "Service_Role", ANON;
      REVOKE ALL ON FUNCTION s.h(text, integer) FROM anon;`;
    expect(functionMeta(sql, "s.h(text)")).toEqual({ securityDefiner: true, searchPath: null, executeRoles: [] });
    expect(functionMeta(sql, "s.h(text,int4)")).toEqual({ securityDefiner: true, searchPath: "''", executeRoles: ["Service_Role"] });
  });

  it("refuses a signature the file does not define, naming what it defines", () => {
    expect(() => functionMeta("CREATE FUNCTION a.b() RETURNS int LANGUAGE sql AS 'select 1';", "a.c(uuid)")).toThrow(
      'function "a.c(uuid)" is not defined by this SQL (defines: "a.b()")',
    );
  });
});

describe("signatures", () => {
  it("reduces an argument to its type: names, modes and defaults go", () => {
    expect(argumentType("p_quantity integer DEFAULT 1")).toBe("integer");
    expect(argumentType("IN p_key text = NULL")).toBe("text");
    expect(argumentType("timestamp with time zone")).toBe("timestamp with time zone");
    expect(argumentType("p_at double precision")).toBe("double precision");
    expect(argumentType("int")).toBe("integer");
    expect(normaliseSignature("Public.Consume_Credits_Rpc(uuid, text, int, text)")).toBe("public.consume_credits_rpc(uuid,text,integer,text)");
  });

  it("splits statements on semicolons outside strings and bodies (PostgreSQL's parser)", () => {
    expect(executedStatements("SELECT ';'; DO $x$ BEGIN NULL; END $x$; SELECT 2").statements.map((s) => s.type)).toEqual([
      "SelectStmt",
      "DoStmt",
      "SelectStmt",
    ]);
  });
});

describe("SQL shapes a regular expression reads wrongly (read with PostgreSQL's parser)", () => {
  const revokeAll = (sig: string) => `REVOKE ALL ON FUNCTION ${sig} FROM PUBLIC, anon;`;

  it("reads several functions per file, LANGUAGE after AS, and bodies in dollar quotes or single quotes that mention GRANT, SECURITY DEFINER and SET search_path", () => {
    const sql = `
      CREATE OR REPLACE FUNCTION public.a(p_org uuid) RETURNS integer
      AS $fn$
        BEGIN
          -- GRANT EXECUTE ON FUNCTION public.a(uuid) TO anon;
          EXECUTE 'GRANT EXECUTE ON FUNCTION public.a(uuid) TO anon';
          RAISE NOTICE 'CREATE POLICY p ON public.organizations USING (true); SECURITY DEFINER';
          RETURN 1;
        END
      $fn$ LANGUAGE plpgsql SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;
      ${revokeAll("public.a(uuid)")}
      CREATE FUNCTION public.b() RETURNS text LANGUAGE sql
        AS 'SELECT ''SECURITY DEFINER SET search_path = public; GRANT EXECUTE ON FUNCTION public.b() TO anon''';
      CREATE FUNCTION public.c(x text) RETURNS int LANGUAGE sql STABLE /* SECURITY DEFINER */ SET search_path = '' BEGIN ATOMIC SELECT 1; SELECT 2; END;`;
    expect(functionDefinitions(sql)).toEqual([
      { signature: "public.a(uuid)", meta: { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: [] } },
      { signature: "public.b()", meta: { securityDefiner: false, searchPath: null, executeRoles: ["PUBLIC"] } },
      { signature: "public.c(text)", meta: { securityDefiner: false, searchPath: "''", executeRoles: ["PUBLIC"] } },
    ]);
  });

  it("keeps quoted names: spaces, capitals and keywords, in names, arguments and roles", () => {
    const sql = `CREATE FUNCTION "Reports"."Monthly Sum"("Org Id" uuid, "from" timestamptz, p_note character varying(80)) RETURNS int
                   LANGUAGE sql SECURITY DEFINER SET search_path = "Reports", pg_temp AS 'SELECT 1';
                 REVOKE ALL ON FUNCTION "Reports"."Monthly Sum"(uuid, timestamp with time zone, varchar) FROM PUBLIC;
                 GRANT EXECUTE ON FUNCTION "Reports"."Monthly Sum"(uuid, timestamptz, text) TO anon;
                 GRANT EXECUTE ON FUNCTION "Reports"."Monthly Sum"(uuid, timestamptz, character varying) TO "Report Readers";`;
    expect(functionDefinitions(sql)).toEqual([
      {
        signature: '"Reports"."Monthly Sum"(uuid,timestamp with time zone,character varying)',
        // The grant to anon names another signature (text, not character varying): it is not this function's.
        meta: { securityDefiner: true, searchPath: "'Reports', pg_temp", executeRoles: ["Report Readers"] },
      },
    ]);
    expect(functionMeta(sql, '"Reports"."Monthly Sum"(uuid, timestamptz, varchar(80))').executeRoles).toEqual(["Report Readers"]);
    expect(() => functionMeta(sql, "reports.monthly_sum(uuid)")).toThrow('function "reports.monthly_sum(uuid)" is not defined by this SQL');
  });

  it.each([
    ["SET search_path = pg_catalog, pg_temp", "pg_catalog, pg_temp"],
    ["SET search_path TO pg_catalog, pg_temp", "pg_catalog, pg_temp"],
    ["SET search_path TO 'pg_catalog', \"pg_temp\"", "pg_catalog, pg_temp"],
    ["SET search_path = 'pg_catalog, pg_temp'", "'pg_catalog, pg_temp'"],
    ["SET search_path = DEFAULT", null],
    ["SET search_path FROM CURRENT", "FROM CURRENT"],
    ["SET work_mem = '64MB' SET search_path=pg_temp", "pg_temp"],
  ])("%s -> searchPath %s", (clause, expected) => {
    const sql = `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql ${clause} AS 'SELECT 1';`;
    expect(functionMeta(sql, "public.f()").searchPath).toBe(expected);
  });

  it("follows ALTER FUNCTION ... SECURITY, SET search_path and RESET after the CREATE", () => {
    const create = "CREATE FUNCTION public.f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';";
    expect(functionMeta(`${create} ALTER FUNCTION public.f(integer) SECURITY DEFINER SET search_path TO pg_catalog, pg_temp;`, "public.f(int)")).toEqual({
      securityDefiner: true,
      searchPath: "pg_catalog, pg_temp",
      executeRoles: ["PUBLIC"],
    });
    expect(
      functionMeta(`${create} ALTER FUNCTION public.f(int4) SET search_path = pg_temp; ALTER ROUTINE public.f RESET ALL;`, "public.f(int)").searchPath,
    ).toBeNull();
    // Another overload's ALTER is not this function's.
    expect(functionMeta(`${create} ALTER FUNCTION public.f(bigint) SECURITY DEFINER;`, "public.f(int)").securityDefiner).toBe(false);
  });

  it("applies GRANT and REVOKE as PostgreSQL does: per overload, ON ALL FUNCTIONS IN SCHEMA, ROUTINE, and GRANT OPTION FOR", () => {
    const sql = `CREATE FUNCTION s.f(uuid) RETURNS int LANGUAGE sql AS 'SELECT 1';
                 CREATE FUNCTION s.f(text) RETURNS int LANGUAGE sql AS 'SELECT 1';
                 REVOKE ALL ON ALL FUNCTIONS IN SCHEMA s FROM PUBLIC;
                 GRANT EXECUTE ON ROUTINE s.f(uuid) TO authenticated WITH GRANT OPTION;
                 GRANT ALL PRIVILEGES ON FUNCTION s.f(text), s.f(uuid) TO service_role;
                 REVOKE GRANT OPTION FOR EXECUTE ON FUNCTION s.f(uuid) FROM authenticated;
                 REVOKE EXECUTE ON FUNCTION s.f(text) FROM service_role;`;
    expect(functionMeta(sql, "s.f(uuid)").executeRoles).toEqual(["authenticated", "service_role"]);
    expect(functionMeta(sql, "s.f(text)").executeRoles).toEqual([]);
  });

  it("reads what a DO block runs, and CREATE OR REPLACE keeps the privileges", () => {
    const sql = `CREATE FUNCTION public.g() RETURNS int LANGUAGE sql AS 'SELECT 1';
                 DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN RAISE NOTICE 'GRANT EXECUTE ON FUNCTION public.g() TO anon'; END IF;
                   REVOKE ALL ON FUNCTION public.g() FROM PUBLIC;
                   EXECUTE 'GRANT EXECUTE ON FUNCTION public.g() TO service_role';
                 END $$;
                 CREATE OR REPLACE FUNCTION public.g() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS 'SELECT 2';`;
    expect(functionMeta(sql, "public.g()")).toEqual({ securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: ["service_role"] });
  });

  it("refuses SQL that does not parse, with the line and column", () => {
    expect(() =>
      functionDefinitions("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nGRANT EXECUTE ON FUNCTON public.f() TO anon;"),
    ).toThrow(/syntax error at or near "public" \(line 2, column 26\)/); // FUNCTON read as a table name
  });
});

describe("executedStatements (lib/pgsql.ts)", () => {
  it("gives each statement the line of its first word, past comments; a DO block's statements the DO's line", () => {
    const sql =
      "SELECT 1;\n-- a comment\n/* a /* nested */ one */\n  GRANT EXECUTE ON FUNCTION public.f() TO anon;\nDO $$ BEGIN\n  REVOKE ALL ON FUNCTION public.f() FROM anon;\nEND $$;";
    const { statements } = executedStatements(sql);
    expect(statements.map((s) => [s.type, s.via, s.line])).toEqual([
      ["SelectStmt", "sql", 1],
      ["GrantStmt", "sql", 4],
      ["DoStmt", "sql", 5],
      ["GrantStmt", "do", 5],
    ]);
  });

  it("reads a constant EXECUTE as SQL and lists SQL built at run time, and a DO block in another language, as unreadable", () => {
    const sql =
      "DO $$ BEGIN EXECUTE 'GRANT EXECUTE ON FUNCTION public.f() TO anon'::text; EXECUTE 'SELECT ' || 1; END $$;\nDO LANGUAGE plv8 $$ plv8.execute('SELECT 1') $$;";
    const { statements, unreadable } = executedStatements(sql);
    expect(statements.map((s) => [s.type, s.via])).toEqual([
      ["DoStmt", "sql"],
      ["GrantStmt", "execute"],
      ["DoStmt", "sql"],
    ]);
    expect(unreadable).toEqual([
      { line: 1, text: "EXECUTE 'SELECT ' || 1" },
      { line: 2, text: "DO LANGUAGE plv8" },
    ]);
  });
});
