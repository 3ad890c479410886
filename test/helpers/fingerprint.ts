/**
 * A fingerprint of a database, to prove that something wrote nothing: one md5 for the catalog (schemas, relations,
 * columns, constraints, indexes, functions, triggers, policies, privileges; every schema but the system ones) and
 * one md5 per table of its rows. Compare two fingerprints with diffFingerprints: it names what changed.
 */
import type { TestDb } from "./db";

export interface Fingerprint {
  catalog: string;
  /** Catalog lines, kept for a readable difference. */
  catalogLines: string[];
  tables: Record<string, string>;
}

const USER_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'`;

const CATALOG_SQL = `
SELECT x FROM (
  SELECT 'schema ' || n.nspname || ' ' || coalesce(n.nspacl::text, '') AS x FROM pg_namespace n WHERE ${USER_SCHEMAS}
  UNION ALL
  SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity || ' ' || coalesce(c.relacl::text, '')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'i', 'S')
  UNION ALL
  SELECT 'column ' || c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE ${USER_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'constraint ' || k.conrelid::regclass::text || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) || ' valid=' || k.convalidated
    FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE ${USER_SCHEMAS} AND k.conrelid <> 0
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS}
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '')
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMAS} AND p.prokind IN ('f', 'p')
  UNION ALL
  SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
    FROM pg_trigger t WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'policy ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || permissive || ' ' || cmd || ' ' || roles::text ||
         ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
    FROM pg_policies
) s ORDER BY x`;

export async function fingerprint(db: TestDb): Promise<Fingerprint> {
  const catalogLines = (await db.query<{ x: string }>(CATALOG_SQL)).map((r) => r.x);
  const tables: Record<string, string> = {};
  const rels = await db.query<{ t: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ${USER_SCHEMAS} AND c.relkind IN ('r', 'p') ORDER BY 1`,
  );
  for (const { t } of rels) {
    const [r] = await db.query(`SELECT count(*)::bigint AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS h FROM ${t} x`);
    tables[t] = `${r.n} rows ${r.h}`;
  }
  const crypto = require("crypto");
  return { catalog: crypto.createHash("md5").update(catalogLines.join("\n")).digest("hex"), catalogLines, tables };
}

/** What differs between two fingerprints, one line per catalog line or table; empty when identical. */
export function diffFingerprints(a: Fingerprint, b: Fingerprint): string[] {
  const out: string[] = [];
  const A = new Set(a.catalogLines);
  const B = new Set(b.catalogLines);
  for (const l of a.catalogLines) if (!B.has(l)) out.push(`catalog - ${l}`);
  for (const l of b.catalogLines) if (!A.has(l)) out.push(`catalog + ${l}`);
  for (const t of new Set([...Object.keys(a.tables), ...Object.keys(b.tables)])) {
    if (a.tables[t] !== b.tables[t]) out.push(`table ${t}: ${a.tables[t] ?? "absent"} -> ${b.tables[t] ?? "absent"}`);
  }
  return out;
}
