/**
 * The credit engine in a test database without the Pulumi engine: the same SQL files and generated catalogue SQL the
 * CreditSchema, Catalogue and CreditFunctions components apply, in their order, each in one transaction. (Fixtures
 * may later switch to a real `pulumi up`.) Plus small builders for organizations and users.
 */
import * as crypto from "crypto";
import type { Client } from "pg";
import { actionCatalogueSql, planCatalogueSql } from "../../lib/catalogueSql";
import { type CreditModel, type GuardianConfig, parseConfig, type PoolAmounts } from "../../lib/config";
import { inTransaction } from "../../lib/db";
import { explainSqlError, loadSql } from "../../lib/sql";
import { CREDIT_FUNCTIONS } from "../../components/creditFunctions";
import { CREDIT_SCHEMA_OBJECTS } from "../../components/creditSchema";
import type { TestDb } from "./db";

/** Applies one SQL file's text, in its own transaction unless `transaction` is false; an error names the file. */
export async function applySql(c: Client, file: string, text: string, transaction = true): Promise<void> {
  try {
    await (transaction ? inTransaction(c, () => c.query(text)) : c.query(text));
  } catch (e) {
    throw explainSqlError(e, file, text);
  }
}

/** Applies the credit schema, the catalogue (from config) and the functions on an open connection. */
export async function applyCreditEngine(c: Client, config: GuardianConfig): Promise<void> {
  for (const s of CREDIT_SCHEMA_OBJECTS) await applySql(c, s.file, loadSql(s.file).text, s.transaction !== false);
  await applySql(c, "(generated from guardian:actions)", actionCatalogueSql(config));
  await applySql(c, "(generated from guardian:plans)", planCatalogueSql(config));
  for (const f of CREDIT_FUNCTIONS) await applySql(c, f.file, loadSql(f.file).text);
}

/**
 * Installs the credit engine in db. `config` is raw stack config without the `guardian:` prefix (e.g. `{ actions: {...} }`),
 * validated as the program validates it; the defaults of facts.md otherwise. Returns the validated config.
 */
export async function installCreditEngine(db: TestDb, config: Record<string, unknown> = {}): Promise<GuardianConfig> {
  const parsed = parseConfig({ databaseUrl: db.url, ...config });
  const c = await db.client();
  try {
    await applyCreditEngine(c, parsed);
  } finally {
    await c.end();
  }
  return parsed;
}

export interface OrgSpec {
  model?: CreditModel;
  plan?: string;
  totalCredits?: number;
  creditsRemaining?: number;
  /** Available credits per pool (totals are set to the same values). */
  pools?: Partial<PoolAmounts>;
  isTrial?: boolean;
  cycleEndDate?: Date | null;
  /** false: the organization has no organization_credits row. */
  creditAccount?: boolean;
}

/** Creates an organization with a credit row as described; returns its id. */
export async function makeOrg(db: TestDb, spec: OrgSpec = {}): Promise<string> {
  const id = crypto.randomUUID();
  await db.query(`INSERT INTO public.organizations (id, name, slug) VALUES ($1, $2, $3)`, [id, `Org ${id.slice(0, 8)}`, `org-${id}`]);
  if (spec.creditAccount === false) return id;
  const p = { ai: 0, whatsapp: 0, email: 0, sms: 0, ...spec.pools };
  // The backfill's write trigger (when installed) allocates new rows itself; this builder sets the pools directly.
  await db.query(
    `INSERT INTO public.organization_credits (organization_id, plan_name, total_credits, credits_remaining, is_trial, cycle_end_date)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [id, spec.plan ?? "free", spec.totalCredits ?? spec.creditsRemaining ?? 0, spec.creditsRemaining ?? 0, spec.isTrial ?? false, spec.cycleEndDate ?? null],
  );
  await db.query(
    `UPDATE public.organization_credits
        SET credit_model = $2,
            ai_credits_total = $3, ai_credits_available = $3, whatsapp_credits_total = $4, whatsapp_credits_available = $4,
            email_credits_total = $5, email_credits_available = $5, sms_credits_total = $6, sms_credits_available = $6
      WHERE organization_id = $1`,
    [id, spec.model ?? "unified", p.ai, p.whatsapp, p.email, p.sms],
  );
  return id;
}

/** Creates an auth user with a profile in the organization; returns the user id (the JWT `sub`). */
export async function makeUser(db: TestDb, organizationId: string, role = "user"): Promise<string> {
  const id = crypto.randomUUID();
  await db.query(`INSERT INTO auth.users (id) VALUES ($1)`, [id]);
  await db.query(`INSERT INTO public.profiles (id, organization_id, role) VALUES ($1, $2, $3)`, [id, organizationId, role]);
  return id;
}

export interface Balances {
  credits_remaining: number;
  credit_model: string;
  ai: number;
  whatsapp: number;
  email: number;
  sms: number;
}

/** The organization's balances as stored. */
export async function balances(db: TestDb, organizationId: string): Promise<Balances> {
  const [r] = await db.query<Balances>(
    `SELECT credits_remaining, credit_model, ai_credits_available AS ai, whatsapp_credits_available AS whatsapp,
            email_credits_available AS email, sms_credits_available AS sms
       FROM public.organization_credits WHERE organization_id = $1`,
    [organizationId],
  );
  return r;
}
