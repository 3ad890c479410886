/**
 * CreditSchema: the additive Phase 3.5 schema. The internal schema `guardian` with its tables, and the new columns
 * (with their CHECKs and index) on organization_credits, credit_actions and credit_consumption_logs.
 *
 * Every object is retained on delete (no dropSql): rollback must lose nothing, and the columns keep the per-pool
 * history of the consumption log queryable after it.
 */
import * as pulumi from "@pulumi/pulumi";
import { combinedSha256, loadSql } from "../lib/sql";
import { type GuardianContext, sqlFileObject } from "./sqlFile";

/** One SQL file of the credit schema and how to tell it is applied. */
export interface SchemaObjectSpec {
  /** Child name suffix: `${name}-<role>`. */
  role: string;
  file: string;
  kind: "schema" | "columns" | "constraints" | "index";
  objectName: string;
  probeSql: string;
  /** false: applied outside a transaction (CREATE INDEX CONCURRENTLY); the file holds one statement. */
  transaction?: boolean;
}

export const GUARDIAN_TABLES = [
  "allocation_split",
  "backfill_anomalies",
  "backups",
  "idempotency_keys",
  "migration_journal",
  "plan_catalogue",
  "provider_costs",
];

/** The Phase 3.5 columns, constraints and indexes per table, as the files under sql/schema/ create them. */
export const ADDITIVE_COLUMNS: Record<string, { columns: string[]; constraints: string[]; indexes: string[] }> = {
  organization_credits: {
    columns: [
      "ai_credits_total",
      "ai_credits_available",
      "whatsapp_credits_total",
      "whatsapp_credits_available",
      "email_credits_total",
      "email_credits_available",
      "sms_credits_total",
      "sms_credits_available",
      "credit_model",
      "allocation_epoch",
    ],
    constraints: [
      "organization_credits_ai_credits_available_nonnegative",
      "organization_credits_whatsapp_credits_available_nonnegative",
      "organization_credits_email_credits_available_nonnegative",
      "organization_credits_sms_credits_available_nonnegative",
      "organization_credits_credit_model_known",
      "organization_credits_allocation_epoch_nonnegative",
    ],
    indexes: [],
  },
  credit_actions: {
    columns: ["ai_credits_required", "whatsapp_credits_required", "email_credits_required", "sms_credits_required"],
    constraints: [
      "credit_actions_ai_credits_required_nonnegative",
      "credit_actions_whatsapp_credits_required_nonnegative",
      "credit_actions_email_credits_required_nonnegative",
      "credit_actions_sms_credits_required_nonnegative",
    ],
    indexes: [],
  },
  credit_consumption_logs: {
    columns: [
      "quantity",
      "ai_consumed",
      "whatsapp_consumed",
      "email_consumed",
      "sms_consumed",
      "user_id",
      "idempotency_key",
      "credit_model",
      "allocation_epoch",
      "error_code",
    ],
    constraints: ["credit_consumption_logs_quantity_range", "credit_consumption_logs_pools_consumed_nonnegative", "credit_consumption_logs_credit_model_known"],
    indexes: ["credit_consumption_logs_org_epoch_success_idx"],
  },
};

const textArray = (xs: string[]) => `ARRAY[${xs.map((x) => `'${x.replace(/'/g, "''")}'`).join(", ")}]::text[]`;

/** Fingerprint of the guardian schema: its tables' columns and who must not use it. No row until all tables exist. */
export function guardianSchemaProbe(): string {
  return `SELECT md5(string_agg(c.relname || '(' ||
           (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
              FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ')', ';' ORDER BY c.relname)
         -- what the file enforces on the schema: no USAGE for the Data API roles or PUBLIC (grants made by other
         -- components, e.g. service_role for the margin views, are theirs and not drift of this object)
         || '|' || coalesce((SELECT string_agg(r, ',') FROM unnest(ARRAY['anon', 'authenticated']) r
                              WHERE has_schema_privilege(r, 'guardian', 'USAGE')), '')
         || '|' || (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'guardian' AND a.grantee = 0)) AS fingerprint
  FROM pg_class c
 WHERE c.relnamespace = to_regnamespace('guardian') AND c.relkind = 'r' AND c.relname = ANY (${textArray(GUARDIAN_TABLES)})
HAVING count(*) = ${GUARDIAN_TABLES.length}`;
}

/** Fingerprint of a table's Phase 3.5 columns (type, nullability, default) and CHECK definitions. No row until
 *  every column is there. (Validation and the index are later steps with their own probes.) */
export function columnsProbe(table: string): string {
  const spec = ADDITIVE_COLUMNS[table];
  if (!spec) throw new Error(`no Phase 3.5 columns are defined for table "${table}"`);
  const rel = `to_regclass('public.${table}')`;
  return `SELECT md5(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''), ',' ORDER BY a.attname)
         || '|' || coalesce((SELECT string_agg(k.conname || ' ' || replace(pg_get_constraintdef(k.oid), ' NOT VALID', ''), ',' ORDER BY k.conname)
                               FROM pg_constraint k WHERE k.conrelid = ${rel} AND k.conname = ANY (${textArray(spec.constraints)})), '')) AS fingerprint
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = ${rel} AND a.attname = ANY (${textArray(spec.columns)}) AND NOT a.attisdropped
HAVING count(*) = ${spec.columns.length}`;
}

/** The credit schema's files in the order they are applied (tests and the bench apply the same list). */
export const CREDIT_SCHEMA_OBJECTS: SchemaObjectSpec[] = [
  { role: "guardian-schema", file: "schema/01_guardian_schema.sql", kind: "schema", objectName: "guardian", probeSql: guardianSchemaProbe() },
  {
    role: "organization-credits",
    file: "schema/02_organization_credits.sql",
    kind: "columns",
    objectName: "public.organization_credits",
    probeSql: columnsProbe("organization_credits"),
  },
  {
    role: "credit-actions",
    file: "schema/03_credit_actions.sql",
    kind: "columns",
    objectName: "public.credit_actions",
    probeSql: columnsProbe("credit_actions"),
  },
  {
    role: "consumption-logs",
    file: "schema/04_credit_consumption_logs.sql",
    kind: "columns",
    objectName: "public.credit_consumption_logs",
    probeSql: columnsProbe("credit_consumption_logs"),
  },
  {
    role: "validate-constraints",
    file: "schema/05_validate_constraints.sql",
    kind: "constraints",
    objectName: "Phase 3.5 CHECK constraints",
    probeSql: validatedProbe(),
  },
  {
    role: "consumption-log-index",
    file: "schema/06_consumption_log_index.sql",
    kind: "index",
    objectName: "public.credit_consumption_logs_org_epoch_success_idx",
    probeSql: indexProbe("credit_consumption_logs"),
    transaction: false,
  },
];

/** One row once every Phase 3.5 CHECK constraint is validated. */
export function validatedProbe(): string {
  const all = Object.values(ADDITIVE_COLUMNS).flatMap((s) => s.constraints);
  return `SELECT md5(string_agg(conname, ',' ORDER BY conname)) AS fingerprint FROM pg_constraint
           WHERE conname = ANY (${textArray(all)}) AND convalidated HAVING count(*) = ${all.length}`;
}

/** One row once the table's Phase 3.5 indexes exist and are valid (an interrupted concurrent build is not). */
export function indexProbe(table: string): string {
  const spec = ADDITIVE_COLUMNS[table];
  return `SELECT md5(string_agg(pg_get_indexdef(i.indexrelid), ',' ORDER BY 1)) AS fingerprint
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           WHERE i.indrelid = to_regclass('public.${table}') AND ic.relname = ANY (${textArray(spec.indexes)}) AND i.indisvalid
          HAVING count(*) = ${spec.indexes.length}`;
}

export interface CreditSchemaArgs {
  /**
   * The connection string (secret) and the validated config. Required. Only `databaseUrl` and `config.ddl`
   * (lock timeout and retries of each DDL transaction) are used; the schema does not depend on the credit model.
   */
  ctx: GuardianContext;
}

/** The internal `guardian` schema and the additive columns of Phase 3.5, one SqlObject per SQL file. */
export class CreditSchema extends pulumi.ComponentResource {
  /** sha256 of each applied file, keyed by its path under sql/. */
  readonly sqlSha256: pulumi.Output<Record<string, string>>;
  /** One sha256 over all of them (a scalar to pass where a single upstream value is wanted). */
  readonly combinedSqlSha256: pulumi.Output<string>;
  /** "guardian". */
  readonly schemaName: pulumi.Output<string>;
  /** The Phase 3.5 columns per public table. */
  readonly columns: pulumi.Output<Record<string, string[]>>;
  /** Fingerprint of each live object right after it was applied, keyed by file. */
  readonly appliedFingerprints: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: CreditSchemaArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:CreditSchema", name, {}, opts);
    const { ctx } = args;
    const [schemaSpec, orgCredits, actions, logs, validate, logIndex] = CREDIT_SCHEMA_OBJECTS;
    const schema = sqlFileObject(`${name}-${schemaSpec.role}`, ctx, schemaSpec, { parent: this });
    // The column files are independent of each other; they follow the schema so the journal table exists first.
    const columns = [orgCredits, actions, logs].map((s) => sqlFileObject(`${name}-${s.role}`, ctx, s, { parent: this, dependsOn: [schema] }));
    const validated = sqlFileObject(`${name}-${validate.role}`, ctx, validate, { parent: this, dependsOn: columns });
    // After the validation: VALIDATE CONSTRAINT and CREATE INDEX CONCURRENTLY on the same table, side by side,
    // can deadlock, and the failed build leaves an INVALID index behind.
    const index = sqlFileObject(`${name}-${logIndex.role}`, ctx, logIndex, { parent: this, dependsOn: [columns[2], validated] });
    const objects = [schema, ...columns, validated, index];

    const shas: Record<string, string> = Object.fromEntries(CREDIT_SCHEMA_OBJECTS.map((s) => [s.file, loadSql(s.file).sha256]));
    this.sqlSha256 = pulumi.output(shas);
    this.combinedSqlSha256 = pulumi.output(combinedSha256(shas));
    this.schemaName = pulumi.output("guardian");
    this.columns = pulumi.output(Object.fromEntries(Object.entries(ADDITIVE_COLUMNS).map(([t, s]) => [t, s.columns])));
    this.appliedFingerprints = pulumi
      .all(objects.map((o) => o.appliedFingerprint))
      .apply((fps) => Object.fromEntries(CREDIT_SCHEMA_OBJECTS.map((s, i) => [s.file, fps[i]])));

    this.registerOutputs({
      sqlSha256: this.sqlSha256,
      combinedSqlSha256: this.combinedSqlSha256,
      schemaName: this.schemaName,
      columns: this.columns,
      appliedFingerprints: this.appliedFingerprints,
    });
  }
}
