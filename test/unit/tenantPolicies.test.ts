/**
 * policyFacts: what a policy file's CREATE POLICY declares (name, table, command, permissive, roles), read with
 * PostgreSQL's parser from the rendered text, including the shapes the regular expression it replaced read wrongly.
 */
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import { policyFacts, POLICY_COMMANDS, TENANCY_DIR, tableFiles, TENANT_TABLES } from "../../components/tenantPolicies";
import { loadSqlParser } from "../../lib/pgsql";
import { loadSql, SQL_ROOT } from "../../lib/sql";

beforeAll(loadSqlParser);

const file = (text: string) => ({ file: "tenancy/99_test_select.sql", text, sha256: "" });
const facts = (text: string, command: (typeof POLICY_COMMANDS)[number] = "select") => policyFacts(file(text), "public.organization_credits", command);

describe("policyFacts on the project's policy files (rendered by loadSql)", () => {
  const entries = fs.readdirSync(path.join(SQL_ROOT, TENANCY_DIR));
  const cases = TENANT_TABLES.flatMap((t) => POLICY_COMMANDS.map((c) => [t.table, c, tableFiles(t.table, entries)[c]] as const));
  it.each(cases)("%s %s (%s): one guardian_ policy on that table and command", (table, command, f) => {
    const p = policyFacts(loadSql(f), table, command);
    expect(p).toMatchObject({ table, command, policyName: `guardian_${command}` });
    expect(p.roles.length).toBeGreaterThan(0);
    // No direct writes of credit, catalogue or log rows: restrictive. Organizations and profiles are the
    // application's: their write policies say who may (a super_admin; a user its own profile), permissively.
    const applications = ["public.organizations", "public.profiles"].includes(table);
    if (command !== "select") expect(p.permissive).toBe(applications);
  });
});

describe("policyFacts: SQL shapes a regular expression reads wrongly", () => {
  it("takes the statement, not CREATE POLICY text in comments, strings or DO blocks", () => {
    const sql = `-- was: CREATE POLICY "Authenticated users can view organization credits" ON public.organization_credits AS PERMISSIVE FOR SELECT TO authenticated USING (auth.role() = 'authenticated');
      DO $$ BEGIN
        RAISE NOTICE 'CREATE POLICY legacy ON public.organization_credits AS PERMISSIVE FOR SELECT TO anon USING (true)';
      END $$;
      /* CREATE POLICY other ON public.organizations AS RESTRICTIVE FOR DELETE TO anon USING (false) */
      CREATE POLICY guardian_select ON public.organization_credits AS PERMISSIVE FOR SELECT TO authenticated USING (true);`;
    expect(facts(sql)).toEqual({
      table: "public.organization_credits",
      command: "select",
      policyName: "guardian_select",
      permissive: true,
      roles: ["authenticated"],
    });
  });

  it("reads a policy name quoted with spaces and punctuation, quoted roles and PUBLIC", () => {
    const sql = `CREATE POLICY "Members read their org's credits, v2" ON public.organization_credits
                   AS RESTRICTIVE FOR SELECT TO PUBLIC, "Report Readers", Authenticated USING (true);`;
    expect(facts(sql)).toEqual({
      table: "public.organization_credits",
      command: "select",
      policyName: "Members read their org's credits, v2",
      permissive: false,
      roles: ["public", "Report Readers", "authenticated"],
    });
  });

  it("applies PostgreSQL's defaults: no AS is PERMISSIVE, no TO is PUBLIC, no FOR is ALL", () => {
    expect(facts("CREATE POLICY guardian_select ON public.organization_credits FOR SELECT USING (true);")).toMatchObject({
      permissive: true,
      roles: ["public"],
    });
    expect(() => facts("CREATE POLICY guardian_select ON public.organization_credits USING (true);")).toThrow(
      'sql/tenancy/99_test_select.sql: the policy is FOR ALL, but the file name says "select"',
    );
    expect(() => facts("CREATE POLICY guardian_select ON public.organization_credits AS PERMISSIVE FOR ALL TO authenticated USING (true);")).toThrow(
      "the policy is FOR ALL",
    );
  });

  it("reads a policy created by a DO block (static or a constant EXECUTE), and refuses one built at run time", () => {
    expect(
      facts(`DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE policyname = 'guardian_select') THEN
          CREATE POLICY guardian_select ON public.organization_credits FOR SELECT TO authenticated USING (true);
        END IF;
      END $$;`).policyName,
    ).toBe("guardian_select");
    expect(facts(`DO $$ BEGIN EXECUTE 'CREATE POLICY guardian_select ON public.organization_credits FOR SELECT TO anon USING (false)'; END $$;`).roles).toEqual(
      ["anon"],
    );
    expect(() =>
      facts(`DO $$ BEGIN EXECUTE format('CREATE POLICY %I ON public.organization_credits FOR SELECT USING (true)', 'guardian_select'); END $$;`),
    ).toThrow(
      "line 1 builds a policy at run time (EXECUTE format('CREATE POLICY %I ON public.organization_credits FOR SELECT USING (true)', 'guardian_select'))",
    );
  });

  it("refuses a file with no policy, two policies, another table or another command, and SQL that does not parse", () => {
    expect(() => facts("SELECT 1;")).toThrow(
      'expected exactly one "CREATE POLICY <name> ON public.organization_credits [AS PERMISSIVE|RESTRICTIVE] FOR SELECT TO <roles> ...", found none',
    );
    expect(() =>
      facts(
        `CREATE POLICY a ON public.organization_credits FOR SELECT USING (true);\nCREATE POLICY "B c" ON public.organization_credits FOR SELECT USING (true);`,
      ),
    ).toThrow('found 2: a (line 1), "B c" (line 2)');
    expect(() => facts("CREATE POLICY guardian_select ON organization_credits FOR SELECT USING (true);")).toThrow(
      'the policy is on "organization_credits", but the file name says "public.organization_credits"',
    );
    expect(() => facts("CREATE POLICY guardian_insert ON public.organization_credits FOR INSERT WITH CHECK (false);")).toThrow(
      'the policy is FOR INSERT, but the file name says "select"',
    );
    expect(() => facts("CREATE POLICY guardian_select ON public.organization_credits FOR SELECT USING (true")).toThrow(
      "sql/tenancy/99_test_select.sql: does not parse: syntax error at end of input (line 1, column 84)",
    );
  });
});
