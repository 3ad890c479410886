/**
 * A fresh database shaped like the Guardian CRM's REAL production schema (harness/fixtures/real-crm/*.sql), which differs
 * from this project's own seed (sql/baseline + scripts/seed.ts): profiles.user_role instead of role, no is_trial,
 * organization_credits without a foreign key, 26 live action prices, the live v1 consume_credits_rpc, the leaking RLS.
 *
 *   const db = await freshRealCrmDb({ orgs: 500, seed: 7 });
 *   try { ... } finally { await db.drop(); }
 *
 * Data is a pure function of (orgs, seed), generated set-based in SQL (10,000 orgs in about a second). Timestamps are
 * offsets from an anchor (default: the start of the current UTC day), so that an active trial is active and an expired
 * one expired whenever the test runs. With orgs >= REAL_CRM_FACTS.data.minOrgsForEveryFact every data fact below holds
 * whatever the seed; orgs = 0 creates the schema (and the price list) only.
 */
import * as fs from "fs";
import * as path from "path";
import type { Client } from "pg";
import { inTransaction } from "../lib/db";
import { fromTemplate, type TestDb } from "./db";

const ROOT = path.resolve(__dirname, "..");
const SUPABASE_SQL = path.join(ROOT, "sql", "baseline", "01_supabase.sql");
const FIXTURE_DIR = path.join(ROOT, "harness", "fixtures", "real-crm");
/** Applied in this order, after sql/baseline/01_supabase.sql. */
export const REAL_CRM_FILES = ["01_schema.sql", "02_v1.sql", "03_live_rls.sql"] as const;

export type CrmUserRole = "user" | "admin" | "super_admin" | "enterprise";

export interface RealCrmFacts {
  tables: readonly string[];
  /** Columns present, per table (in table order). */
  columns: Readonly<Record<string, readonly string[]>>;
  /** Columns this project's seed has and the real CRM lacks. */
  absentColumns: Readonly<Record<string, readonly string[]>>;
  profileRoleColumn: "user_role";
  userRoles: readonly CrmUserRole[];
  /** organization_credits.organization_id has no foreign key (dropped by a CASCADE in the CRM's scripts). */
  creditsForeignKey: false;
  /** The 26 live action types and their credits_cost. */
  actionCosts: Readonly<Record<string, number>>;
  /** Action types whose price the CRM's SQL does not give: the fixture chose one. */
  chosenCosts: readonly string[];
  /** Canonical plan names (lower-case, trimmed) used by the data. */
  planNames: readonly string[];
  /** Raw plan_name spellings that are not canonical (case, spaces). */
  planNameVariants: readonly string[];
  /** total_credits per canonical plan name. */
  planCredits: Readonly<Record<string, number>>;
  /** Trials: this plan name with a cycle_end_date (14 days); no is_trial column. */
  trialPlan: "trial_14";
  trialDays: 14;
  /** The cross-tenant leak on organization_credits. */
  leakingPolicy: "Authenticated users can view organization credits";
  /** Every policy, per table; tables not listed have neither RLS nor policies. */
  policies: Readonly<Record<string, readonly string[]>>;
  tablesWithoutRls: readonly string[];
  v1: {
    signature: "public.consume_credits_rpc(uuid,text)";
    executeGrantedTo: readonly string[];
    /** An unknown action type is inserted into credit_actions at this cost and charged it. */
    unknownActionCost: 1;
    /** An organization without a credit row gets one on its first call: */
    newAccount: { plan_name: "free"; total_credits: 100; credits_remaining: 100 };
    insufficientError: "Insufficient credits";
    /** A call for an organization that does not exist (or for the orphan credit row) fails on the log's foreign key. */
    unknownOrganizationSqlState: "23503";
  };
  data: {
    /** From this many orgs on, every data fact holds for every seed. */
    minOrgsForEveryFact: number;
    /** Share of organizations (beyond the forced ones) without a credit row. */
    noCreditRowShare: number;
    usersPerOrg: readonly [number, number];
    superAdmins: number;
    /** Credit rows whose organization does not exist. */
    orphanCreditRows: 1;
    /** auth.users rows without a profile. */
    usersWithoutProfile: 1;
    /** Log rows per organization that has a credit row. */
    logsPerOrg: readonly [number, number];
    defaultSeed: number;
  };
}

const ACTION_COSTS: Record<string, number> = {
  ai_chat: 1,
  ai_assistant: 2,
  form_generation: 5,
  automation_run: 3,
  whatsapp_message: 1,
  email_send: 1,
  bulk_email: 10,
  sms_send: 2,
  create_crm_event: 1,
  ai_form_generation: 3,
  ai_email_generation: 3,
  ai_whatsapp_generation: 2,
  ai_calendar_optimization: 4,
  ai_analytics_insights: 5,
  ai_lead_scoring: 5,
  ai_automation_processing: 4,
  send_welcome_email: 2,
  send_whatsapp_message: 3,
  schedule_reminder_email: 1,
  schedule_reminder_whatsapp: 2,
  data_export: 5,
  send_email: 1,
  send_whatsapp: 2,
  email_campaign: 3,
  report_generation: 3,
  workflow_automation: 2,
};

const PLAN_CREDITS: Record<string, number> = {
  free: 100,
  starter: 1000,
  professional: 3000,
  business: 8000,
  premium: 20000,
  enterprise: 50000,
  trial_14: 280,
  pro: 2500,
  advanced: 5000,
  freelancer: 500,
  agency: 6000,
  studio: 4000,
};

/** Weighted plan mix for the organizations beyond the forced ones (weights sum to 100). */
const PLAN_MIX: ReadonlyArray<readonly [string, number]> = [
  ["free", 23],
  ["starter", 14],
  ["professional", 12],
  ["business", 8],
  ["premium", 5],
  ["enterprise", 3],
  ["trial_14", 16],
  ["pro", 4],
  ["advanced", 3],
  ["freelancer", 4],
  ["agency", 3],
  ["studio", 2],
  [" Pro", 1],
  ["STARTER ", 1],
  ["Professional", 1],
];

/**
 * The first organizations are forced, so that small fixtures hold every fact: org i (1-based) gets FORCED[i-1].
 * 'none' = no credit row; 'negative' = negative credits_remaining; 'expired'/'active' = trial state.
 */
const FORCED: ReadonlyArray<{ plan: string; kind?: "none" | "negative" | "expired" | "active" }> = [
  { plan: "free" },
  { plan: "starter" },
  { plan: "professional" },
  { plan: "business" },
  { plan: "premium" },
  { plan: "enterprise" },
  { plan: "trial_14", kind: "expired" },
  { plan: "trial_14", kind: "active" },
  { plan: "pro" },
  { plan: "advanced" },
  { plan: "freelancer" },
  { plan: "agency" },
  { plan: "studio" },
  { plan: " Pro" },
  { plan: "STARTER " },
  { plan: "Professional" },
  { plan: "free", kind: "none" },
  { plan: "starter", kind: "negative" },
];

export const REAL_CRM_FACTS: RealCrmFacts = {
  tables: ["organizations", "profiles", "organization_credits", "credit_actions", "credit_consumption_logs"],
  columns: {
    organizations: ["id", "name", "slug", "owner_id", "settings", "subscription_tier", "status", "vertical", "created_at", "updated_at"],
    profiles: ["id", "organization_id", "user_role", "email", "full_name", "created_at"],
    organization_credits: [
      "organization_id",
      "plan_name",
      "total_credits",
      "credits_remaining",
      "cycle_start_date",
      "cycle_end_date",
      "created_at",
      "updated_at",
    ],
    credit_actions: ["action_type", "credits_cost", "description", "created_at"],
    credit_consumption_logs: ["id", "organization_id", "action_type", "credits_consumed", "credits_remaining", "success", "error_message", "created_at"],
  },
  absentColumns: { profiles: ["role"], organization_credits: ["is_trial"] },
  profileRoleColumn: "user_role",
  userRoles: ["user", "admin", "super_admin", "enterprise"],
  creditsForeignKey: false,
  actionCosts: ACTION_COSTS,
  chosenCosts: ["ai_automation_processing", "send_welcome_email"],
  planNames: Object.keys(PLAN_CREDITS),
  planNameVariants: [" Pro", "STARTER ", "Professional"],
  planCredits: PLAN_CREDITS,
  trialPlan: "trial_14",
  trialDays: 14,
  leakingPolicy: "Authenticated users can view organization credits",
  policies: {
    organization_credits: [
      "Authenticated users can view organization credits",
      "Super admins can view all organization credits",
      "Users can view credits for their organization",
    ],
    organizations: ["Super admins can view all organizations", "Users can view their organization"],
    profiles: ["Super admins can view all profiles", "Users can insert own profile", "Users can update own profile", "Users can view own profile"],
  },
  tablesWithoutRls: ["credit_actions", "credit_consumption_logs"],
  v1: {
    signature: "public.consume_credits_rpc(uuid,text)",
    executeGrantedTo: ["PUBLIC", "anon", "authenticated", "service_role"],
    unknownActionCost: 1,
    newAccount: { plan_name: "free", total_credits: 100, credits_remaining: 100 },
    insufficientError: "Insufficient credits",
    unknownOrganizationSqlState: "23503",
  },
  data: {
    minOrgsForEveryFact: FORCED.length,
    noCreditRowShare: 0.03,
    usersPerOrg: [1, 3],
    superAdmins: 2,
    orphanCreditRows: 1,
    usersWithoutProfile: 1,
    logsPerOrg: [1, 4],
    defaultSeed: 1,
  },
};

function sqlText(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

async function runFile(c: Client, file: string): Promise<void> {
  const text = fs.readFileSync(file, "utf8");
  try {
    await c.query(text);
  } catch (e: any) {
    const where = typeof e?.position === "string" ? ` (line ${text.slice(0, Number(e.position) - 1).split("\n").length})` : "";
    e.message = `${path.relative(ROOT, file)}${where}: ${e.message}`;
    throw e;
  }
}

/**
 * The data, one statement each. Written with $1::int = orgs, $2::int = seed, $3::timestamptz = anchor, which are
 * inlined as literals (validated numbers and an ISO date): some statements use only some of them.
 */
function dataStatements(orgs: number, seed: number, anchor: Date): string[] {
  const inline = (s: string) =>
    s
      .replace(/\$1::int/g, `(${orgs})`)
      .replace(/\$2::int/g, `(${seed})`)
      .replace(/\$3::timestamptz/g, `'${anchor.toISOString()}'::timestamptz`);
  return statementTemplates().map(inline);
}

function statementTemplates(): string[] {
  const mix = PLAN_MIX.map(([p, w], k) => `(${sqlText(p)}, ${w}, ${k + 1})`).join(", ");
  const credits = Object.entries(PLAN_CREDITS)
    .map(([p, n]) => `(${sqlText(p)}, ${n})`)
    .join(", ");
  const forced = FORCED.map((f, k) => `(${k + 1}, ${sqlText(f.plan)}, ${f.kind ? sqlText(f.kind) : "NULL"})`).join(", ");
  const actions = `ARRAY[${Object.keys(ACTION_COSTS).map(sqlText).join(", ")}]::text[]`;
  // rnd(seed, i, salt) in [0, 1): the first 32 bits of an md5; uid(seed, kind) a name-based uuid.
  const rnd = (i: string, salt: string) => `(('x' || substr(md5($2::int || ':' || ${i} || ':${salt}'), 1, 8))::bit(32)::bigint / 4294967296.0)`;
  const uid = (kind: string) => `md5('real-crm:' || $2::int || ':${kind}')::uuid`;
  return [
    // One row per organization with every choice made.
    `CREATE TEMP TABLE rc_org ON COMMIT DROP AS
     WITH mix AS (
       SELECT plan, (sum(w) OVER (ORDER BY ord) - w) / 100.0 AS lo, sum(w) OVER (ORDER BY ord) / 100.0 AS hi
         FROM (VALUES ${mix}) AS m(plan, w, ord)
     ), forced(i, plan, kind) AS (VALUES ${forced}),
     base AS (
       SELECT i,
              md5('real-crm:' || $2::int || ':org:' || i)::uuid AS id,
              ${rnd("i", "plan")} AS r_plan, ${rnd("i", "nocredit")} AS r_none, ${rnd("i", "neg")} AS r_neg,
              ${rnd("i", "trial")} AS r_trial, ${rnd("i", "bal")} AS r_bal, ${rnd("i", "cycle")} AS r_cycle,
              ${rnd("i", "age")} AS r_age, ${rnd("i", "users")} AS r_users, ${rnd("i", "logs")} AS r_logs,
              ${rnd("i", "vertical")} AS r_vert, ${rnd("i", "status")} AS r_status
         FROM generate_series(1, $1::int) AS i
     )
     SELECT b.*, coalesce(f.plan, m.plan) AS plan, f.kind AS forced_kind,
            CASE WHEN f.i IS NOT NULL THEN f.kind IS NOT DISTINCT FROM 'none'
                 ELSE b.r_none < ${REAL_CRM_FACTS.data.noCreditRowShare} END AS no_credit,
            CASE WHEN f.i IS NOT NULL THEN f.kind IS NOT DISTINCT FROM 'negative' ELSE b.r_neg < 0.004 END AS negative
       FROM base b
       LEFT JOIN forced f ON f.i = b.i
       LEFT JOIN mix m ON f.i IS NULL AND b.r_plan >= m.lo AND b.r_plan < m.hi`,
    `ALTER TABLE rc_org ADD COLUMN canonical text, ADD COLUMN total integer, ADD COLUMN n_users integer,
       ADD COLUMN n_logs integer, ADD COLUMN created timestamptz`,
    `UPDATE rc_org o
        SET canonical = lower(btrim(o.plan)),
            total = pc.n,
            n_users = 1 + floor(o.r_users * 3)::int,
            n_logs = CASE WHEN o.i = 1 THEN 3 ELSE 1 + floor(o.r_logs * 4)::int END,
            created = $3::timestamptz - make_interval(days => 30 + floor(o.r_age * 870)::int, secs => floor(o.r_age * 86399))
       FROM (VALUES ${credits}) AS pc(plan, n)
      WHERE pc.plan = lower(btrim(o.plan))`,
    // auth.users: members (1-3 per org), the super admins, one user who never got a profile.
    `CREATE TEMP TABLE rc_user ON COMMIT DROP AS
     SELECT md5('real-crm:' || $2::int || ':user:' || o.i || ':' || k)::uuid AS id, o.i, o.id AS organization_id, k,
            CASE WHEN k = 1 THEN CASE WHEN o.canonical = 'enterprise' THEN 'enterprise' ELSE 'admin' END
                 WHEN ${rnd("o.i || ':' || k", "role")} < 0.15 THEN 'admin' ELSE 'user' END AS user_role,
            'user' || k || '.org' || o.i || '@crm' || $2::int || '.example.test' AS email,
            'User ' || k || ' of organization ' || o.i AS full_name,
            o.created + make_interval(days => (k - 1) * 7) AS created
       FROM rc_org o, generate_series(1, o.n_users) AS k
     UNION ALL
     SELECT md5('real-crm:' || $2::int || ':superadmin:' || j)::uuid, o.i, o.id, 0, 'super_admin',
            'superadmin' || j || '@crm' || $2::int || '.example.test', 'Platform admin ' || j, o.created
       FROM generate_series(1, ${REAL_CRM_FACTS.data.superAdmins}) AS j
       JOIN rc_org o ON o.i = least(j, $1::int)`,
    `INSERT INTO public.organizations (id, name, slug, owner_id, settings, subscription_tier, status, vertical, created_at, updated_at)
     SELECT o.id,
            (ARRAY['Agenzia', 'Studio', 'Gruppo', 'Immobiliare', 'Assicurazioni', 'Consulting', 'Servizi', 'Marketing'])
              [1 + (o.i % 8)] || ' ' || lpad(o.i::text, 5, '0'),
            'org-' || $2::int || '-' || o.i,
            md5('real-crm:' || $2::int || ':user:' || o.i || ':1')::uuid,
            CASE WHEN o.r_status < 0.5 THEN '{}'::jsonb ELSE jsonb_build_object('locale', 'it-IT', 'timezone', 'Europe/Rome') END,
            CASE WHEN o.no_credit THEN 'free' ELSE o.canonical END,
            CASE WHEN o.canonical = 'trial_14' THEN 'trial' WHEN o.r_status > 0.97 THEN 'suspended' ELSE 'active' END,
            (ARRAY['standard', 'insurance', 'real_estate', 'marketing_agency'])[1 + floor(o.r_vert * 4)::int],
            o.created, o.created + make_interval(days => floor(o.r_status * 20)::int)
       FROM rc_org o`,
    `INSERT INTO auth.users (id, email, created_at)
     SELECT id, email, created FROM rc_user
     UNION ALL
     SELECT ${uid("noprofile")}, 'no-profile@crm' || $2::int || '.example.test', $3::timestamptz - interval '3 days'
      WHERE $1::int > 0`,
    `INSERT INTO public.profiles (id, organization_id, user_role, email, full_name, created_at)
     SELECT id, organization_id, user_role, email, full_name, created FROM rc_user`,
    // Credit rows: trials of 14 days (expired or active), monthly cycles otherwise, none for enterprise's custom deal.
    `INSERT INTO public.organization_credits
       (organization_id, plan_name, total_credits, credits_remaining, cycle_start_date, cycle_end_date, created_at, updated_at)
     SELECT o.id, o.plan, o.total,
            CASE WHEN o.negative THEN -(1 + floor(o.r_bal * 25)::int) ELSE floor(o.r_bal * o.total)::int END,
            s.start,
            CASE WHEN o.canonical = 'trial_14' THEN s.start + interval '14 days'
                 WHEN o.canonical = 'enterprise' THEN NULL
                 ELSE s.start + interval '30 days' END,
            o.created, $3::timestamptz - make_interval(hours => floor(o.r_cycle * 72)::int)
       FROM rc_org o
      CROSS JOIN LATERAL (
        SELECT CASE
                 WHEN o.canonical = 'trial_14' AND coalesce(o.forced_kind = 'expired', o.r_trial < 0.4)
                   THEN $3::timestamptz - make_interval(days => 15 + floor(o.r_cycle * 45)::int, secs => floor(o.r_bal * 86399))
                 WHEN o.canonical = 'trial_14'
                   THEN $3::timestamptz - make_interval(days => floor(o.r_cycle * 13)::int, secs => floor(o.r_bal * 86399))
                 ELSE $3::timestamptz - make_interval(days => floor(o.r_cycle * 30)::int, secs => floor(o.r_bal * 86399))
               END AS start
      ) s
      WHERE NOT o.no_credit
     UNION ALL
     SELECT ${uid("orphan")}, 'professional', 3000, 1234,
            $3::timestamptz - interval '10 days', $3::timestamptz + interval '20 days',
            $3::timestamptz - interval '400 days', $3::timestamptz - interval '10 days'
      WHERE $1::int > 0`,
    // History: 1-4 attempts per organization with credits, about 15% refused; org 1 has one of each.
    `INSERT INTO public.credit_consumption_logs
       (organization_id, action_type, credits_consumed, credits_remaining, success, error_message, created_at)
     SELECT o.id, a.action_type,
            CASE WHEN ok THEN a.credits_cost ELSE 0 END,
            CASE WHEN ok THEN greatest(oc.credits_remaining, 0) + (o.n_logs - k) * a.credits_cost
                 ELSE floor(${rnd("o.i || ':' || k", "left")} * a.credits_cost)::int END,
            ok,
            CASE WHEN ok THEN NULL ELSE 'Insufficient credits' END,
            $3::timestamptz - make_interval(days => (o.n_logs - k) * 3 + 1, secs => floor(${rnd("o.i || ':' || k", "at")} * 86399))
       FROM rc_org o
       JOIN public.organization_credits oc ON oc.organization_id = o.id
      CROSS JOIN LATERAL generate_series(1, o.n_logs) AS k
      CROSS JOIN LATERAL (
        SELECT CASE WHEN o.i = 1 THEN k > 1 ELSE ${rnd("o.i || ':' || k", "ok")} >= 0.15 END AS ok,
               (${actions})[1 + floor(${rnd("o.i || ':' || k", "action")} * 26)::int] AS pick
      ) x
       JOIN public.credit_actions a ON a.action_type = x.pick
      ORDER BY 7`,
    `ANALYZE public.organizations, public.profiles, public.organization_credits, public.credit_consumption_logs, auth.users`,
  ];
}

function startOfUtcDay(d = new Date()): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
}

/**
 * A fresh database on the local server with the Supabase pieces (sql/baseline/01_supabase.sql), the real CRM schema
 * (harness/fixtures/real-crm/*.sql) and `orgs` organizations of deterministic data. The caller drops it (db.drop()).
 */
export async function freshRealCrmDb(opts: { orgs: number; seed?: number; anchor?: Date }): Promise<TestDb> {
  if (!Number.isInteger(opts.orgs) || opts.orgs < 0) throw new Error(`freshRealCrmDb: orgs must be an integer >= 0, got ${opts.orgs}`);
  const seed = opts.seed ?? REAL_CRM_FACTS.data.defaultSeed;
  if (!Number.isInteger(seed)) throw new Error(`freshRealCrmDb: seed must be an integer, got ${seed}`);
  const anchor = startOfUtcDay(opts.anchor);
  return fromTemplate(`real-crm:${opts.orgs}:${seed}:${anchor.toISOString()}`, (db) => buildRealCrm(db, opts.orgs, seed, anchor), "gt_realcrm");
}

async function buildRealCrm(db: TestDb, orgs: number, seed: number, anchor: Date): Promise<void> {
  const c = await db.client();
  try {
    // Roles are cluster-wide: serialise with ensureBaseline (lib/baseline.ts) in parallel tests.
    await c.query("SELECT pg_advisory_lock(4711001)");
    try {
      await runFile(c, SUPABASE_SQL);
    } finally {
      await c.query("SELECT pg_advisory_unlock(4711001)");
    }
    await inTransaction(c, async () => {
      for (const f of REAL_CRM_FILES) await runFile(c, path.join(FIXTURE_DIR, f));
      if (orgs > 0) {
        for (const s of dataStatements(orgs, seed, anchor)) await c.query(s);
      }
    });
  } finally {
    await c.end();
  }
}

export interface CrmUser {
  userId: string;
  organizationId: string;
  userRole: CrmUserRole;
}

/** A member (user_role 'user' where there is one, never super_admin) of an organization that has a credit row. */
export async function sampleMember(db: TestDb): Promise<CrmUser> {
  const rows = await db.query<CrmUser>(
    `SELECT p.id AS "userId", p.organization_id AS "organizationId", p.user_role AS "userRole"
       FROM public.profiles p
       JOIN public.organization_credits oc ON oc.organization_id = p.organization_id
      WHERE p.user_role <> 'super_admin'
      ORDER BY (p.user_role <> 'user'), p.id
      LIMIT 1`,
  );
  if (!rows.length) throw new Error("sampleMember: no member in this database (orgs = 0?)");
  return rows[0];
}

/** A profile with user_role 'super_admin'. */
export async function sampleSuperAdmin(db: TestDb): Promise<CrmUser> {
  const rows = await db.query<CrmUser>(
    `SELECT id AS "userId", organization_id AS "organizationId", user_role AS "userRole"
       FROM public.profiles WHERE user_role = 'super_admin' ORDER BY id LIMIT 1`,
  );
  if (!rows.length) throw new Error("sampleSuperAdmin: no super_admin profile in this database (orgs = 0?)");
  return rows[0];
}

/** The auth user who has no profile (hence no organization). */
export async function userWithoutProfile(db: TestDb): Promise<{ userId: string }> {
  const rows = await db.query<{ userId: string }>(
    `SELECT u.id AS "userId" FROM auth.users u
      WHERE NOT EXISTS (SELECT 1 FROM public.profiles p WHERE p.id = u.id) ORDER BY u.id LIMIT 1`,
  );
  if (!rows.length) throw new Error("userWithoutProfile: every auth user has a profile here (orgs = 0?)");
  return rows[0];
}

/** An organization that exists and has no credit row. */
export async function orgWithoutCredits(db: TestDb): Promise<{ organizationId: string }> {
  const rows = await db.query<{ organizationId: string }>(
    `SELECT o.id AS "organizationId" FROM public.organizations o
      WHERE NOT EXISTS (SELECT 1 FROM public.organization_credits oc WHERE oc.organization_id = o.id)
      ORDER BY o.id LIMIT 1`,
  );
  if (!rows.length) throw new Error("orgWithoutCredits: every organization has a credit row here");
  return rows[0];
}

/** The organization id of the credit row whose organization does not exist. */
export async function orphanCreditOrg(db: TestDb): Promise<{ organizationId: string }> {
  const rows = await db.query<{ organizationId: string }>(
    `SELECT oc.organization_id AS "organizationId" FROM public.organization_credits oc
      WHERE NOT EXISTS (SELECT 1 FROM public.organizations o WHERE o.id = oc.organization_id)
      ORDER BY 1 LIMIT 1`,
  );
  if (!rows.length) throw new Error("orphanCreditOrg: no orphan credit row here (orgs = 0?)");
  return rows[0];
}
