/**
 * TenantPolicies: tenant isolation of the credit tables: RLS helpers, Data API privileges, row level security and one
 * policy per table and command, each a SqlObject applied from a file under sql/tenancy/.
 *
 *   sql/tenancy/00_helpers.sql            guardian_rls.current_org_id(), .is_super_admin()       kind "function"
 *   sql/tenancy/01_roles_grants.sql       privileges of anon / authenticated / service_role      kind "grants"
 *   sql/tenancy/02_profiles_guard.sql     a profile's organization and role: the backend's       kind "trigger"
 *   sql/tenancy/<n>0_<table>_select.sql   who reads which rows                                   kind "policy"
 *   sql/tenancy/<n>1..3_<table>_<cmd>.sql no direct insert / update / delete (restrictive)       kind "policy"
 *   sql/tenancy/<n>9_<table>_rls.sql      ENABLE ROW LEVEL SECURITY                               kind "rls"
 *
 * Order (dependsOn): helpers -> grants -> every policy -> every rls switch, so a table's policies exist before its
 * RLS is switched on (no moment where members of a tenant suddenly see nothing), and the live cross-tenant policy is
 * dropped in the same transaction that creates its replacement.
 *
 * The program owns every policy on these tables: before a file creates the program's policy for a command, every
 * policy of that table that applies to the command (FOR <command> or FOR ALL) and that the program did not write
 * (name not guardian_*) is dropped, in the same transaction (ownPoliciesSql). Preview lists them (go/no-go's
 * discovery, and this component's `replacedPolicies`), and the backup records their definitions (guardian.backups
 * .policies) before anything changes. Permissive policies OR together, so keeping one written for another purpose
 * (e.g. "Authenticated users can view organization credits", USING (auth.role() = 'authenticated')) would keep its
 * rows open whatever the program's own policy says. Nothing relies on a policy's name but the guardian_ prefix.
 *
 * On delete: policies are dropped (dropSql); RLS stays enabled, privileges stay revoked and the helpers stay, so a
 * destroyed component fails closed (authenticated reads nothing) rather than reopening the cross-tenant leak.
 *
 * Probes read pg_policies (all policies of the table for that command, ours and any added by hand, so a dropped,
 * edited or extra policy shows as drift on `pulumi preview --refresh`), pg_class.relrowsecurity and the ACLs.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { type ExecutedSql, executedStatements, type Node, quoteIdent, roleName, SqlParseError, unwrap } from "../lib/pgsql";
import { loadSql, sha256, SQL_ROOT, type SqlFile } from "../lib/sql";
import type { SqlObject } from "../providers/sqlObject";
import { TENANT_TABLES, type TenantTable } from "../lib/tenantTables";
import { type GuardianContext, shapeOf, sqlTextObject } from "./sqlFile";

export const TENANCY_DIR = "tenancy";
export const POLICY_COMMANDS = ["select", "insert", "update", "delete"] as const;
export type PolicyCommand = (typeof POLICY_COMMANDS)[number];

export { TENANT_TABLES };
export type { TenantTable };

export const AUDIT_JOURNAL = "guardian.migration_journal";

export interface TenantPoliciesArgs {
  /** Connection string (secret) and validated config; the DDL lock timeout and retries come from `config.ddl`. */
  ctx: GuardianContext;
  /**
   * Whether to guard guardian.migration_journal. Default true: the journal exists before this component runs (the
   * Audit component is created first; pass it in `opts.dependsOn`). Set false only on a stack without that journal.
   */
  auditJournal?: boolean;
}

/** What one policy file declares, read from its CREATE POLICY statement (so meta cannot drift from the SQL). */
export interface PolicyFacts {
  table: string;
  command: PolicyCommand;
  policyName: string;
  permissive: boolean;
  roles: string[];
}

/**
 * The one CREATE POLICY a policy file runs, read with PostgreSQL's parser from the rendered text (loadSql): comments,
 * strings and DO blocks that only mention CREATE POLICY do not count; a DO block that runs one does. PostgreSQL's
 * defaults apply: no AS clause is PERMISSIVE, no FOR clause is FOR ALL, no TO clause is PUBLIC. The table must be
 * written as in TENANT_TABLES (schema-qualified).
 */
export function policyFacts(file: SqlFile, table: string, command: PolicyCommand): PolicyFacts {
  const where = `sql/${file.file}`;
  let executed: ExecutedSql;
  try {
    executed = executedStatements(file.text);
  } catch (e) {
    if (e instanceof SqlParseError) throw new Error(`${where}: does not parse: ${e.message}`);
    throw e;
  }
  const creates = executed.statements.filter((s) => s.type === "CreatePolicyStmt");
  const dynamic = executed.unreadable.filter((u) => /\bCREATE\s+POLICY\b/i.test(u.text));
  if (dynamic.length) {
    throw new Error(
      `${where}: line ${dynamic[0].line} builds a policy at run time (${dynamic[0].text}); write the CREATE POLICY as a statement so the program can read it`,
    );
  }
  if (creates.length !== 1) {
    const found = creates.length
      ? `found ${creates.length}: ${creates.map((c) => `${quoteIdent(c.stmt.policy_name ?? "")} (line ${c.line})`).join(", ")}`
      : "found none";
    throw new Error(
      `${where}: expected exactly one "CREATE POLICY <name> ON ${table} [AS PERMISSIVE|RESTRICTIVE] FOR ${command.toUpperCase()} TO <roles> ...", ${found}`,
    );
  }
  const p = creates[0].stmt;
  const on = [p.table?.schemaname, p.table?.relname].filter(Boolean).join(".");
  if (on !== table) throw new Error(`${where}: the policy is on "${on}", but the file name says "${table}"`);
  const cmd = String(p.cmd_name ?? "all");
  if (cmd !== command) throw new Error(`${where}: the policy is FOR ${cmd.toUpperCase()}, but the file name says "${command}"`);
  return {
    table,
    command,
    policyName: p.policy_name ?? "",
    permissive: p.permissive === true,
    // pg_policies shows PUBLIC as "public"; a quoted role keeps its case.
    roles: (p.roles ?? [{ RoleSpec: { roletype: "ROLESPEC_PUBLIC" } }]).map((r: Node) => {
      const name = roleName(unwrap(r)[1]);
      return name === "PUBLIC" ? "public" : name;
    }),
  };
}

/** The files of one table: <nn>_<name>_<command>.sql for every command, and <nn>_<name>_rls.sql. */
export function tableFiles(table: string, dirEntries = fs.readdirSync(path.join(SQL_ROOT, TENANCY_DIR))): Record<PolicyCommand | "rls", string> {
  const bare = table.split(".").pop()!;
  const out: Partial<Record<PolicyCommand | "rls", string>> = {};
  for (const what of [...POLICY_COMMANDS, "rls"] as const) {
    const found = dirEntries.filter((f) => new RegExp(`^\\d\\d_${bare}_${what}\\.sql$`).test(f));
    if (found.length !== 1) {
      throw new Error(
        `sql/${TENANCY_DIR}: expected exactly one file NN_${bare}_${what}.sql for table "${table}", found ${found.length ? found.join(", ") : "none"}`,
      );
    }
    out[what] = `${TENANCY_DIR}/${found[0]}`;
  }
  return out as Record<PolicyCommand | "rls", string>;
}

/** Files under sql/tenancy that no table of TENANT_TABLES (nor the helpers and grants) accounts for. */
export function unwiredFiles(dirEntries: string[]): string[] {
  const known = new RegExp(
    `^(00_helpers|01_roles_grants|02_profiles_guard|\\d\\d_(${TENANT_TABLES.map((t) => t.table.split(".").pop()).join("|")})_(${POLICY_COMMANDS.join("|")}|rls))\\.sql$`,
  );
  return dirEntries.filter((f) => f.endsWith(".sql") && !known.test(f));
}

const q = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Drops every policy of `table` applying to `command` (or FOR ALL) that the program did not write. */
export function ownPoliciesSql(table: string, command: PolicyCommand): string {
  const [schema, name] = table.split(".");
  return `-- (generated, components/tenantPolicies.ts ownPoliciesSql) every policy on ${table} for ${command.toUpperCase()} or ALL
-- that the program did not write is dropped here, in the transaction that creates the program's own (backed up first).
DO $own$
DECLARE
  p record;
BEGIN
  FOR p IN SELECT policyname FROM pg_catalog.pg_policies
            WHERE schemaname = ${q(schema)} AND tablename = ${q(name)} AND cmd IN (${q(command.toUpperCase())}, 'ALL')
              AND policyname NOT LIKE 'guardian\\_%'
  LOOP
    RAISE NOTICE 'dropping policy % on ${table}: not written by guardian-credits', quote_ident(p.policyname);
    EXECUTE format('DROP POLICY %I ON ${table}', p.policyname);
  END LOOP;
END
$own$;
`;
}

function policyProbe(table: string, command: PolicyCommand, policyName: string): string {
  const [schema, name] = table.split(".");
  // Every policy that applies to this command (FOR ALL included), ours or not: an extra permissive policy added by
  // hand is drift too. No row when ours is missing.
  return `SELECT md5(string_agg(format('%s|%s|%s|%s|%s|%s', policyname, permissive, cmd, roles::text, coalesce(qual, ''),
                                      coalesce(with_check, '')), ';' ORDER BY policyname)) AS fingerprint
            FROM pg_catalog.pg_policies
           WHERE schemaname = ${q(schema)} AND tablename = ${q(name)} AND cmd IN (${q(command.toUpperCase())}, 'ALL')
          HAVING bool_or(policyname = ${q(policyName)})`;
}

function rlsProbe(table: string): string {
  return `SELECT format('rowsecurity=%s force=%s', relrowsecurity, relforcerowsecurity) AS fingerprint
            FROM pg_catalog.pg_class WHERE oid = to_regclass(${q(table)}) AND relrowsecurity`;
}

const HELPERS = ["guardian_rls.current_org_id()", "guardian_rls.is_super_admin()"];
function helpersProbe(): string {
  // Definition and ACL of both functions, and the ACL of their schema; no row unless both exist.
  return `SELECT md5(string_agg(pg_get_functiondef(p.oid) || coalesce(p.proacl::text, ''), ';' ORDER BY p.oid::regprocedure::text)
                     || (SELECT coalesce(n.nspacl::text, '') FROM pg_catalog.pg_namespace n WHERE n.nspname = 'guardian_rls')) AS fingerprint
            FROM pg_catalog.pg_proc p
           WHERE p.oid IN (${HELPERS.map((h) => `to_regprocedure(${q(h)})`).join(", ")})
          HAVING count(*) = ${HELPERS.length}`;
}

/** The guard's function (definition, ACL) and its trigger on profiles; no row unless both exist. */
function guardProbe(): string {
  return `SELECT md5(pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '') || pg_get_triggerdef(t.oid)) AS fingerprint
            FROM pg_catalog.pg_proc p
            JOIN pg_catalog.pg_trigger t ON t.tgfoid = p.oid AND t.tgrelid = to_regclass('public.profiles')
                                        AND t.tgname = 'guardian_guard_profile_tenancy'
           WHERE p.oid = to_regprocedure('guardian_rls.guard_profile_tenancy()')`;
}

/** Privileges of the Data API roles (and PUBLIC) on the public credit tables and their sequences, and the default
 *  privileges in schema public: a GRANT made by hand shows as drift. */
function grantsProbe(): string {
  const rels = [...GRANTED_TABLES, "public.credit_consumption_logs_id_seq"];
  return `SELECT md5(coalesce(string_agg(x, ';' ORDER BY x), '')) AS fingerprint FROM (
            SELECT format('%s:%s:%s', c.oid::regclass, coalesce(r.rolname, 'PUBLIC'), a.privilege_type) AS x
              FROM pg_catalog.pg_class c
              CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
              LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
             WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(ARRAY[${rels.map(q).join(", ")}]) t)
               AND (a.grantee = 0 OR r.rolname IN ('anon', 'authenticated', 'service_role'))
            UNION ALL
            SELECT format('default %s %s', d.defaclrole::regrole, d.defaclobjtype) || ':' || d.defaclacl::text
              FROM pg_catalog.pg_default_acl d
             WHERE d.defaclnamespace = to_regnamespace('public')
          ) s`;
}

/** The tables whose privileges 01_roles_grants.sql sets (the journal's belong to sql/audit). */
export const GRANTED_TABLES = TENANT_TABLES.map((t) => t.table).filter((t) => t.startsWith("public."));

type Load = (file: string) => SqlFile;
type TablePlan = { t: (typeof TENANT_TABLES)[number]; files: ReturnType<typeof tableFiles> };
type ForeignPolicy = NonNullable<GuardianContext["discovery"]>["foreignPolicies"][number];
/** One policy the component manages, "table/command", and its SqlObject. */
interface ManagedPolicy {
  objectName: string;
  object: SqlObject;
}

/** The helpers, the Data API grants and the profiles guard, each after the one before. */
function baseObjects(parent: pulumi.Resource, name: string, ctx: GuardianContext, load: Load) {
  const helpersFile = load(`${TENANCY_DIR}/00_helpers.sql`);
  const helpers = sqlTextObject(
    `${name}-helpers`,
    ctx,
    {
      kind: "function",
      objectName: HELPERS.join(", "),
      sql: helpersFile.text,
      sqlFile: helpersFile.file,
      probeSql: helpersProbe(),
      // Retained: other SQL may call them, and dropping them could only break a policy that still uses them.
      meta: { securityDefiner: true, searchPath: "pg_catalog, pg_temp", executeRoles: ["authenticated", "service_role"] },
    },
    { parent },
  );

  const grantsFile = load(`${TENANCY_DIR}/01_roles_grants.sql`);
  const grants = sqlTextObject(
    `${name}-grants`,
    ctx,
    {
      kind: "grants",
      objectName: "Data API privileges on the credit tables",
      sql: grantsFile.text,
      sqlFile: grantsFile.file,
      probeSql: grantsProbe(),
      // Retained: re-granting anon and authenticated on destroy would reopen the tables.
      meta: { roles: ["anon", "authenticated"], tables: GRANTED_TABLES },
    },
    { parent, dependsOn: [helpers] },
  );

  const guardFile = load(`${TENANCY_DIR}/02_profiles_guard.sql`);
  const guard = sqlTextObject(
    `${name}-profiles-guard`,
    ctx,
    {
      kind: "trigger",
      objectName: "public.profiles/guardian_guard_profile_tenancy",
      sql: guardFile.text,
      sqlFile: guardFile.file,
      probeSql: guardProbe(),
      // Retained: dropping it would reopen the escalation (a member raising its own role).
      meta: { table: "public.profiles", securityDefiner: false, searchPath: "pg_catalog, pg_temp" },
    },
    { parent, dependsOn: [grants] },
  );

  return { helpers, grants, guard };
}

/** Per table and command, the program's policy, created in the same transaction as every foreign policy for that
 *  command is dropped (ownPoliciesSql). */
function policyObjects(
  parent: pulumi.Resource,
  name: string,
  ctx: GuardianContext,
  load: Load,
  plans: TablePlan[],
  foreign: ForeignPolicy[],
  after: SqlObject[],
): ManagedPolicy[] {
  const out: ManagedPolicy[] = [];
  for (const { t, files } of plans) {
    const bare = t.table.split(".").pop()!;
    for (const command of POLICY_COMMANDS) {
      const f = load(files[command]);
      const facts = policyFacts(f, t.table, command);
      const replaces = foreign
        .filter((p) => `public.${p.table}` === t.table && (p.command === command.toUpperCase() || p.command === "ALL"))
        .map((p) => p.name);
      const objectName = `${t.table}/${command}`;
      out.push({
        objectName,
        object: sqlTextObject(
          `${name}-${bare}-${command}`,
          ctx,
          {
            kind: "policy",
            objectName,
            sql: ownPoliciesSql(t.table, command) + f.text,
            sqlFile: f.file,
            probeSql: policyProbe(t.table, command, facts.policyName),
            dropSql: `DROP POLICY IF EXISTS ${quoteIdent(facts.policyName)} ON ${t.table}`,
            meta: {
              table: t.table,
              command,
              roles: facts.roles,
              policyName: facts.policyName,
              permissive: facts.permissive,
              ...(replaces.length ? { replacesPolicies: replaces } : {}),
            },
          },
          { parent, dependsOn: after },
        ),
      });
    }
  }
  return out;
}

/** Per table, row level security switched on after every policy of that table is in place. */
function rlsObjects(parent: pulumi.Resource, name: string, ctx: GuardianContext, load: Load, plans: TablePlan[], policies: ManagedPolicy[]): SqlObject[] {
  const out: SqlObject[] = [];
  for (const { t, files } of plans) {
    const bare = t.table.split(".").pop()!;
    const f = load(files.rls);
    out.push(
      sqlTextObject(
        `${name}-${bare}-rls`,
        ctx,
        {
          kind: "rls",
          objectName: t.table,
          sql: f.text,
          sqlFile: f.file,
          probeSql: rlsProbe(t.table),
          // Retained: disabling RLS would hand every row to whoever still holds a privilege.
          meta: { table: t.table, tenantData: t.tenantData },
        },
        { parent, dependsOn: policies.filter((p) => p.objectName.startsWith(`${t.table}/`)).map((p) => p.object) },
      ),
    );
  }

  return out;
}

/** Tenant isolation (contract: "Tenant isolation"): helpers, privileges, RLS and policies of the credit tables. */
export class TenantPolicies extends pulumi.ComponentResource {
  /** "table/command" of every policy this component manages, e.g. "public.organization_credits/select". */
  readonly policies: pulumi.Output<string[]>;
  /** Tables with row level security enabled by this component. */
  readonly rlsTables: pulumi.Output<string[]>;
  /** sha256 of every applied file (relative to sql/), and one over all of them in apply order. */
  readonly files: pulumi.Output<Record<string, string>>;
  readonly sqlSha256: pulumi.Output<string>;
  /** Policies found on these tables that the program did not write, "table/name (command)": dropped as the program's
   *  own are created. */
  readonly replacedPolicies: pulumi.Output<string[]>;
  /** The SqlObjects, in apply order (helpers, grants, policies, rls), for dependsOn by later components. */
  readonly objects: SqlObject[];

  constructor(name: string, args: TenantPoliciesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:TenantPolicies", name, {}, opts);
    const { ctx } = args;
    const tables = TENANT_TABLES.filter((t) => args.auditJournal !== false || t.table !== AUDIT_JOURNAL);
    const entries = fs.readdirSync(path.join(SQL_ROOT, TENANCY_DIR));
    const unwired = unwiredFiles(entries);
    if (unwired.length) {
      throw new Error(
        `sql/${TENANCY_DIR}: ${unwired.join(", ")} belong to no table of TENANT_TABLES (components/tenantPolicies.ts); add the table there or remove the file`,
      );
    }
    const applied: SqlFile[] = [];
    const load = (file: string) => {
      const f = loadSql(file, shapeOf(ctx));
      applied.push(f);
      return f;
    };
    const foreign = ctx.discovery?.foreignPolicies ?? [];
    const plans = tables.map((t) => ({ t, files: tableFiles(t.table, entries) }));
    // In apply order, which is also the order of sqlSha256: helpers, grants, the profiles guard, then every table's
    // policies, then every table's RLS switch.
    const base = baseObjects(this, name, ctx, load);
    const policies = policyObjects(this, name, ctx, load, plans, foreign, [base.grants, base.guard]);
    const rls = rlsObjects(this, name, ctx, load, plans, policies);
    const fileShas: Record<string, string> = Object.fromEntries(applied.map((f) => [f.file, f.sha256]));
    this.objects = [base.helpers, base.grants, base.guard, ...policies.map((p) => p.object), ...rls];
    this.policies = pulumi.output(policies.map((p) => p.objectName));
    this.replacedPolicies = pulumi.output(foreign.map((p) => `public.${p.table}/${p.name} (${p.command})`));
    this.rlsTables = pulumi.output(tables.map((t) => t.table));
    this.files = pulumi.output(fileShas);
    this.sqlSha256 = pulumi.output(sha256(applied.map((f) => `${f.file} ${f.sha256}\n`).join("")));
    this.registerOutputs({
      policies: this.policies,
      replacedPolicies: this.replacedPolicies,
      rlsTables: this.rlsTables,
      files: this.files,
      sqlSha256: this.sqlSha256,
    });
  }
}
