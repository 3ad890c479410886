/**
 * Fixture for the audit and margin tests: a fresh database with the baseline, the internal schema `guardian` and the
 * Phase 3.5 additive columns, then the SQL files under test.
 *
 * The schema comes from the credit-schema component's own file list (components/creditSchema.ts), applied as the
 * component applies it (the log index outside a transaction).
 */
import { CREDIT_SCHEMA_OBJECTS } from "../../components/creditSchema";
import type { CreditModel, GuardianConfig } from "../../lib/config";
import { POOLS } from "../../lib/config";
import { loadSql } from "../../lib/sql";
import { inTransaction } from "../../lib/db";
import { freshDb, type TestDb } from "./db";
import { applySql } from "./engine";

/** Runs SQL files (paths under sql/) in one transaction each, errors located in their file. */
export async function applySqlFiles(db: TestDb, files: string[]): Promise<void> {
  const c = await db.client();
  try {
    for (const file of files) {
      const f = loadSql(file);
      await applySql(c, f.file, f.text);
    }
  } finally {
    await c.end();
  }
}

/** Runs SQL text as if it were `file` (for rendered SQL, e.g. the purge with another retention). */
export async function applySqlText(db: TestDb, file: string, text: string): Promise<void> {
  const c = await db.client();
  try {
    await applySql(c, file, text);
  } finally {
    await c.end();
  }
}

/** A fresh database with the baseline, the internal schema and the additive columns (the credit schema's files). */
export async function guardianDb(prefix: string): Promise<TestDb> {
  const db = await freshDb({ prefix });
  const c = await db.client();
  try {
    for (const spec of CREDIT_SCHEMA_OBJECTS) {
      const f = loadSql(spec.file);
      await applySql(c, f.file, f.text, spec.transaction !== false);
    }
  } finally {
    await c.end();
  }
  return db;
}

/** Writes guardian.plan_catalogue and guardian.provider_costs from config, as the catalogue component does. */
export async function writeCatalogue(db: TestDb, config: Pick<GuardianConfig, "plans" | "providerCosts">): Promise<void> {
  const c = await db.client();
  try {
    await inTransaction(c, async () => {
      await c.query("DELETE FROM guardian.plan_catalogue");
      for (const [name, p] of Object.entries(config.plans)) {
        await c.query("INSERT INTO guardian.plan_catalogue (plan_name, price_eur, ai, whatsapp, email, sms) VALUES ($1, $2, $3, $4, $5, $6)", [
          name,
          p.priceEur,
          p.ai,
          p.whatsapp,
          p.email,
          p.sms,
        ]);
      }
      await c.query("DELETE FROM guardian.provider_costs");
      for (const pool of POOLS) {
        await c.query("INSERT INTO guardian.provider_costs (pool, unit_cost_eur) VALUES ($1, $2)", [pool, String(config.providerCosts[pool])]);
      }
    });
  } finally {
    await c.end();
  }
}

/** An organization with a credit row; returns its id. */
export async function makeOrg(db: TestDb, opts: { plan?: string; creditModel?: CreditModel; epoch?: number } = {}): Promise<string> {
  const [o] = await db.query<{ id: string }>(`INSERT INTO public.organizations (name, slug) VALUES ('Org', 'org-' || gen_random_uuid()) RETURNING id`);
  await db.query(
    `INSERT INTO public.organization_credits (organization_id, plan_name, total_credits, credits_remaining, credit_model, allocation_epoch)
     VALUES ($1, $2, 1000, 1000, $3, $4)`,
    [o.id, opts.plan ?? "starter", opts.creditModel ?? "unified", opts.epoch ?? 0],
  );
  return o.id;
}

export interface LogRow {
  organizationId: string;
  actionType?: string;
  success?: boolean;
  quantity?: number;
  ai?: number;
  whatsapp?: number;
  email?: number;
  sms?: number;
  userId?: string | null;
  idempotencyKey?: string | null;
  creditModel?: CreditModel | null;
  epoch?: number | null;
  /** Age of the row, e.g. "800 days"; default: now. */
  age?: string;
  errorCode?: string | null;
}

/** Inserts a consumption log row as v2 would write it (as the owner); returns its id. */
export async function insertLog(db: TestDb, r: LogRow): Promise<number> {
  const [row] = await db.query<{ id: string }>(
    `INSERT INTO public.credit_consumption_logs
       (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, quantity,
        ai_consumed, whatsapp_consumed, email_consumed, sms_consumed, user_id, idempotency_key, credit_model,
        allocation_epoch, error_code, created_at)
     VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now() - $16::interval)
     RETURNING id`,
    [
      r.organizationId,
      r.actionType ?? "ai_chat",
      r.success === false ? 0 : (r.quantity ?? 1),
      r.success ?? true,
      r.success === false ? "Insufficient credits" : null,
      r.quantity ?? 1,
      r.ai ?? 0,
      r.whatsapp ?? 0,
      r.email ?? 0,
      r.sms ?? 0,
      r.userId ?? null,
      r.idempotencyKey ?? null,
      r.creditModel === undefined ? "multi" : r.creditModel,
      r.epoch === undefined ? 0 : r.epoch,
      r.errorCode ?? null,
      r.age ?? "0 seconds",
    ],
  );
  return Number(row.id);
}

/** The error a promise rejects with (fails the test if it resolves). */
export async function errorOf(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e: any) {
    return e;
  }
  throw new Error("expected the statement to be refused, but it succeeded");
}
