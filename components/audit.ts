/**
 * Audit: makes the consumption log and the migration journal an append-only audit without personal data, and adds
 * its only two exits, the retention purge and the GDPR erasure (contract.md "Audit and GDPR").
 *
 *   ${name}-append-only  kind "trigger"   sql/audit/01_append_only.sql    triggers refusing UPDATE/DELETE/TRUNCATE on
 *                                                                          public.credit_consumption_logs and
 *                                                                          guardian.migration_journal, the journal's
 *                                                                          no-personal-data check, the REVOKEs
 *   ${name}-purge        kind "function"  sql/audit/02_retention_purge.sql guardian.purge_audit(interval)
 *   ${name}-erasure      kind "function"  sql/audit/03_erasure.sql        guardian.erase_user(uuid)
 *
 * Everything is retained on delete (no dropSql), on rollback to `unified` as on destroy: the audit outlives the
 * migration, and as long as its walls stand its two exits must stand too, or an erasure request could not be served.
 *
 * Convention: the purge and erasure functions set the transaction-local setting `guardian.audit_maintenance = 'on'`
 * around their own statements and restore it before returning; nothing else in the project may set it.
 *
 * Needs the internal schema (guardian.migration_journal) and the additive log columns: depend on CreditSchema.
 */
import * as pulumi from "@pulumi/pulumi";
import { loadSql, sha256 } from "../lib/sql";
import { functionProbe, type GuardianContext, sqlFileObject, sqlTextObject } from "./sqlFile";
import type { SqlObject } from "../providers/sqlObject";

export interface AuditArgs {
  /**
   * Connection string (secret) and validated config. Read: `config.audit.retentionDays` (default 730), which becomes
   * the purge's default and its floor (a caller cannot purge anything younger); `config.ddl` for lock timeouts.
   */
  ctx: GuardianContext;
}

/** The transaction-local setting that lets guardian.purge_audit and guardian.erase_user change audit records. */
export const AUDIT_MAINTENANCE_SETTING = "guardian.audit_maintenance";
export const APPEND_ONLY_TABLES = ["public.credit_consumption_logs", "guardian.migration_journal"];
export const AUDIT_FILES = {
  appendOnly: "audit/01_append_only.sql",
  purge: "audit/02_retention_purge.sql",
  erasure: "audit/03_erasure.sql",
} as const;

const SEARCH_PATH = "pg_catalog, pg_temp";
const serviceOnly = { securityDefiner: true, searchPath: SEARCH_PATH, executeRoles: ["service_role"] };

/**
 * The purge SQL with the stack's retention written over the file's literal '730 days', in the two places it stands:
 * the parameter default and the floor constant. Throws if the file no longer has exactly those two.
 */
export function renderPurgeSql(text: string, retentionDays: number): string {
  if (!Number.isInteger(retentionDays) || retentionDays < 1) {
    throw new Error(`guardian:audit.retentionDays: expected a positive integer, got ${JSON.stringify(retentionDays)}`);
  }
  const slots = [/DEFAULT '730 days'/g, /:= '730 days'/g];
  for (const re of slots) {
    const n = (text.match(re) ?? []).length;
    if (n !== 1) throw new Error(`sql/${AUDIT_FILES.purge}: expected ${re.source} exactly once, found ${n}`);
  }
  return text.replace(slots[0], `DEFAULT '${retentionDays} days'`).replace(slots[1], `:= '${retentionDays} days'`);
}

/** Probe: the four audit triggers (definition and enabled state), their functions, and whether anon or authenticated
 *  could change the tables. No row when a trigger is missing. service_role's privileges are left out of the
 *  fingerprint: the tenant policies grant it table privileges too, and the trigger refuses it either way. */
export const APPEND_ONLY_PROBE = `
SELECT md5(string_agg(x, '|' ORDER BY x)) AS fingerprint FROM (
  SELECT pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text AS x
    FROM pg_trigger t
   WHERE t.tgrelid IN (to_regclass('public.credit_consumption_logs'), to_regclass('guardian.migration_journal'))
     AND t.tgname IN ('guardian_audit_append_only', 'guardian_audit_no_truncate', 'guardian_audit_no_personal_data')
  UNION ALL
  SELECT md5(pg_get_functiondef(p.oid)) FROM pg_proc p
   WHERE p.oid IN (to_regprocedure('guardian.audit_refuse_change()'),
                   to_regprocedure('guardian.audit_journal_no_personal_data()'),
                   to_regprocedure('guardian.audit_personal_data_at(jsonb,text)'))
  UNION ALL
  SELECT 'grant ' || tbl || ' ' || r || ' ' || pr FROM unnest(ARRAY['public.credit_consumption_logs', 'guardian.migration_journal']) tbl,
         unnest(ARRAY['anon', 'authenticated']) r, unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER']) pr
   WHERE to_regclass(tbl) IS NOT NULL AND has_table_privilege(r, tbl, pr)
  UNION ALL
  -- service_role writes no audit row itself (sql/audit/01_append_only.sql): INSERT granted back is drift too.
  SELECT 'grant ' || tbl || ' service_role ' || pr FROM unnest(ARRAY['public.credit_consumption_logs', 'guardian.migration_journal']) tbl,
         unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) pr
   WHERE to_regclass(tbl) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role')
     AND has_table_privilege('service_role', tbl, pr)
) s
HAVING count(*) FILTER (WHERE x LIKE 'CREATE TRIGGER%') = 4`;

/** The append-only audit (triggers + privileges), the retention purge and the GDPR erasure. */
export class Audit extends pulumi.ComponentResource {
  public readonly appendOnly: SqlObject;
  public readonly purge: SqlObject;
  public readonly erasure: SqlObject;
  /** sha256 of the SQL applied, per file under sql/ (the purge's after the retention is written in). */
  public readonly sqlSha256: Record<string, string>;
  public readonly retentionDays: number;
  public readonly appendOnlyTables: string[];
  public readonly maintenanceSetting: string;
  /** Signatures of the only functions through which records leave the audit. */
  public readonly exitFunctions: string[];

  constructor(name: string, args: AuditArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Audit", name, {}, opts);
    const { ctx } = args;
    this.retentionDays = ctx.config.audit.retentionDays;
    this.appendOnlyTables = APPEND_ONLY_TABLES;
    this.maintenanceSetting = AUDIT_MAINTENANCE_SETTING;
    const purgeSig = "guardian.purge_audit(interval)";
    const eraseSig = "guardian.erase_user(uuid)";
    this.exitFunctions = [purgeSig, eraseSig];

    this.appendOnly = sqlFileObject(
      `${name}-append-only`,
      ctx,
      {
        file: AUDIT_FILES.appendOnly,
        kind: "trigger",
        objectName: "guardian.audit_append_only",
        probeSql: APPEND_ONLY_PROBE,
        meta: {
          tables: APPEND_ONLY_TABLES,
          refuses: ["UPDATE", "DELETE", "TRUNCATE"],
          unlessSetting: AUDIT_MAINTENANCE_SETTING,
          privilegesRevokedFrom: ["PUBLIC", "anon", "authenticated", "service_role"],
        },
      },
      { parent: this },
    );

    const purgeFile = loadSql(AUDIT_FILES.purge);
    const purgeSql = renderPurgeSql(purgeFile.text, this.retentionDays);
    this.purge = sqlTextObject(
      `${name}-purge`,
      ctx,
      {
        sql: purgeSql,
        sqlFile: purgeFile.file,
        kind: "function",
        objectName: purgeSig,
        probeSql: functionProbe(purgeSig),
        meta: { ...serviceOnly, retentionDays: this.retentionDays },
      },
      { parent: this, dependsOn: [this.appendOnly] },
    );

    this.erasure = sqlFileObject(
      `${name}-erasure`,
      ctx,
      {
        file: AUDIT_FILES.erasure,
        kind: "function",
        objectName: eraseSig,
        probeSql: functionProbe(eraseSig),
        meta: serviceOnly,
      },
      { parent: this, dependsOn: [this.appendOnly] },
    );

    this.sqlSha256 = {
      [AUDIT_FILES.appendOnly]: loadSql(AUDIT_FILES.appendOnly).sha256,
      [AUDIT_FILES.purge]: sha256(purgeSql),
      [AUDIT_FILES.erasure]: loadSql(AUDIT_FILES.erasure).sha256,
    };

    this.registerOutputs({
      appendOnly: this.appendOnly,
      purge: this.purge,
      erasure: this.erasure,
      sqlSha256: this.sqlSha256,
      retentionDays: this.retentionDays,
      appendOnlyTables: this.appendOnlyTables,
      maintenanceSetting: this.maintenanceSetting,
      exitFunctions: this.exitFunctions,
    });
  }
}
