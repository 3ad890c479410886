/**
 * Shared fixture for the migration tests: a fresh seeded database and a test stack on it, plus readers for the
 * facts the tests assert.
 */
import { seed } from "../../operations/seed";
import { fromTemplate, type TestDb } from "./db";
import { collect, testStack, type TestStack } from "../../harness/stack";

export interface Migrated {
  db: TestDb;
  t: TestStack;
}

/** The seed's timestamps are offsets from the start of the current UTC day: the day is part of a seeded template's key. */
export const seedDay = (): string => new Date().toISOString().slice(0, 10);

/** A fresh database with `orgs` seeded organizations (copied from this run's template of that seed). */
export function seededDb(orgs: number, seedValue = 7, prefix?: string): Promise<TestDb> {
  return fromTemplate(
    `seed:${orgs}:${seedValue}:${seedDay()}`,
    async (db) => {
      await seed({ databaseUrl: db.url, orgs, seed: seedValue, log: () => undefined });
    },
    prefix,
  );
}

export async function seededStack(orgs: number, config: Record<string, unknown> = {}, seedValue = 7): Promise<Migrated> {
  const db = await seededDb(orgs, seedValue);
  const t = await testStack(db.url, { creditModel: "multi", ...config });
  return { db, t };
}

export async function up(t: TestStack) {
  return t.stack.up({ onEvent: collect(t) });
}

export async function preview(t: TestStack, opts: { refresh?: boolean } = {}) {
  return t.stack.preview({ onEvent: collect(t), diff: true, refresh: opts.refresh });
}

export async function teardown(m: Migrated | undefined) {
  if (!m) return;
  m.t.destroyWorkspace();
  await m.db.drop();
}

export interface OrgRow {
  organization_id: string;
  plan_name: string;
  total_credits: number;
  credits_remaining: number;
  credit_model: string;
  allocation_epoch: number;
  [k: string]: any;
}

export async function orgs(db: TestDb): Promise<OrgRow[]> {
  return db.query<OrgRow>(`SELECT * FROM public.organization_credits ORDER BY organization_id`);
}

/** Changes in a preview summary other than "same". */
export function changed(summary: Record<string, number> | undefined): Record<string, number> {
  return Object.fromEntries(Object.entries(summary ?? {}).filter(([k, v]) => k !== "same" && v > 0));
}
