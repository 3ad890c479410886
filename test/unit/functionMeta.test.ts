/**
 * The facts the policy pack gets about each function (securityDefiner, searchPath, executeRoles), read from the SQL.
 */
import { describe, expect, it } from "vitest";
import { CREDIT_FUNCTIONS, functionSpecMeta } from "../../components/creditFunctions";
import { argumentType, functionDefinitions, functionMeta, normaliseSignature, sqlStatements } from "../../lib/functionMeta";

describe("the credit functions' facts, read from their files", () => {
  it("v2 and the batch are SECURITY DEFINER, pin search_path, and only authenticated and service_role may execute them", () => {
    const facts = Object.fromEntries(CREDIT_FUNCTIONS.map((f) => [f.signature, functionSpecMeta(f)]));
    expect(facts).toEqual({
      "guardian.may_consume_for(uuid)": { securityDefiner: false, searchPath: "pg_catalog, pg_temp", executeRoles: [] },
      "public.consume_credits_rpc(uuid,text,integer,text)": { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: ["authenticated", "service_role"] },
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

  it("splits statements on semicolons outside strings and bodies", () => {
    expect(sqlStatements("SELECT ';'; DO $x$ BEGIN NULL; END $x$; SELECT 2")).toEqual(["SELECT ';'", "DO $$", "SELECT 2"]);
  });
});
