/**
 * Stack configuration (namespace `guardian`), read once and validated before anything touches the database.
 *
 * Every problem is reported in one GuardianConfigError, each line naming its key:
 *   guardian:backfill.batchSize: expected a positive integer, got 0
 */
import { z } from "zod";
import { SSL_MODES, type TlsSettings } from "./pgConnection";
import { errorCode, errorMessage, GuardianRefusal } from "./errors";

export const POOLS = ["ai", "whatsapp", "email", "sms"] as const;

/** The credit models: `unified` (one balance, v1's world) and `multi` (Phase 3.5 applied: four pools). */
export const CREDIT_MODELS = ["unified", "multi"] as const;
export type CreditModel = (typeof CREDIT_MODELS)[number];
export type Pool = (typeof POOLS)[number];

const nonNegInt = z.number().int().min(0);
export type PoolAmounts = Record<Pool, number>;

export const planSchema = z
  .object({
    /** EUR per month; null for a plan sold at a custom price (enterprise). */
    priceEur: z.number().min(0).nullable(),
    ai: nonNegInt,
    whatsapp: nonNegInt,
    email: nonNegInt,
    sms: nonNegInt,
  })
  .strict();
export type Plan = z.infer<typeof planSchema>;

export const actionSchema = z
  .object({
    /**
     * The unified cost (credit_actions.credits_cost), used for orgs not yet migrated and for rollback. Optional:
     * omitted, the live price stays as it is (an action missing from the live catalogue is inserted at the sum of its
     * pool costs). Given and different from the live price, preview shows the price change.
     */
    creditsCost: nonNegInt.optional(),
    /** Credits required per pool, per unit of quantity. An action requiring nothing is an explicit all-zero mapping. */
    ai: nonNegInt.default(0),
    whatsapp: nonNegInt.default(0),
    email: nonNegInt.default(0),
    sms: nonNegInt.default(0),
    description: z.string().max(200).optional(),
  })
  .strict();
export type Action = z.infer<typeof actionSchema>;

/** Defaults: the published plans and costs of facts.md. */
export const DEFAULT_PLANS: Record<string, Plan> = {
  starter: { priceEur: 19, ai: 200, whatsapp: 150, email: 1000, sms: 50 },
  professional: { priceEur: 39, ai: 400, whatsapp: 300, email: 3000, sms: 100 },
  business: { priceEur: 79, ai: 800, whatsapp: 600, email: 8000, sms: 250 },
  premium: { priceEur: 149, ai: 1500, whatsapp: 1200, email: 20000, sms: 500 },
  enterprise: { priceEur: null, ai: 1500, whatsapp: 1200, email: 20000, sms: 500 },
  trial_14: { priceEur: 0, ai: 50, whatsapp: 25, email: 200, sms: 5 },
};

export const DEFAULT_SPLIT: Record<Pool, number> = { ai: 0.4, whatsapp: 0.3, email: 0.3, sms: 0 };

/** A default mapping: pool costs only. The first figure is the unified cost facts.md records for the action (or the
 *  one it is inserted with where the live catalogue lacks it); it documents, and sets no price: defaults keep every
 *  live credits_cost as it is. */
const a = (unifiedCost: number, pools: Partial<PoolAmounts>, description: string): Action & { unifiedCost: number } => ({
  ai: 0,
  whatsapp: 0,
  email: 0,
  sms: 0,
  ...pools,
  description,
  unifiedCost,
});
/** The live catalogue with its Phase 3.5 pool costs, plus an explicit mapping for every legacy action type real
 *  callers send. The mapping is by name, never by substring: ai_email_generation is an AI action.
 *  guardian:actions MERGES with these, action by action: an action named there replaces its default entry whole,
 *  the others keep theirs. */
export const DEFAULT_ACTIONS: Record<string, Action> = {
  ai_chat: a(1, { ai: 1 }, "AI chat message"),
  ai_assistant: a(2, { ai: 1 }, "AI assistant task"),
  form_generation: a(5, { ai: 5 }, "AI form generation"),
  automation_run: a(3, { ai: 2 }, "Automation run"),
  whatsapp_message: a(1, { whatsapp: 1 }, "WhatsApp message"),
  email_send: a(1, { email: 1 }, "E-mail"),
  bulk_email: a(10, { email: 10 }, "Bulk e-mail campaign"),
  sms_send: a(2, { sms: 1 }, "SMS"),
  // Action types of the CRM's live catalogue beyond facts.md's first eight.
  data_export: a(0, {}, "Data export (no pool)"),
  send_email: a(1, { email: 1 }, "E-mail (legacy name)"),
  send_whatsapp: a(1, { whatsapp: 1 }, "WhatsApp message (legacy name)"),
  email_campaign: a(10, { email: 10 }, "E-mail campaign"),
  report_generation: a(2, { ai: 2 }, "AI report generation"),
  workflow_automation: a(2, { ai: 2 }, "Workflow automation run"),
  // Legacy action types sent by real callers but missing from the live catalogue.
  create_crm_event: a(0, {}, "CRM event (free)"),
  ai_form_generation: a(5, { ai: 5 }, "AI form generation (legacy name)"),
  ai_email_generation: a(1, { ai: 1 }, "AI e-mail drafting"),
  ai_whatsapp_generation: a(1, { ai: 1 }, "AI WhatsApp drafting"),
  ai_calendar_optimization: a(2, { ai: 2 }, "AI calendar optimization"),
  ai_analytics_insights: a(2, { ai: 2 }, "AI analytics insights"),
  ai_lead_scoring: a(1, { ai: 1 }, "AI lead scoring"),
  ai_automation_processing: a(2, { ai: 2 }, "AI automation processing"),
  send_welcome_email: a(1, { email: 1 }, "Welcome e-mail"),
  send_whatsapp_message: a(1, { whatsapp: 1 }, "WhatsApp message (legacy name)"),
  schedule_reminder_email: a(1, { email: 1 }, "Reminder e-mail"),
  schedule_reminder_whatsapp: a(1, { whatsapp: 1 }, "Reminder WhatsApp"),
};

/** The unified cost of each default action as facts.md records it (the seed's live prices; legacy actions at the sum
 *  of their pools, the cost they are inserted with). For tests and the bench, which compute expected balances. */
export const DEFAULT_UNIFIED_COSTS: Record<string, number> = Object.fromEntries(
  Object.entries(DEFAULT_ACTIONS).map(([k, v]) => [k, (v as Action & { unifiedCost: number }).unifiedCost]),
);
for (const v of Object.values(DEFAULT_ACTIONS)) delete (v as Partial<{ unifiedCost: number }>).unifiedCost;

export const DEFAULT_PROVIDER_COSTS: Record<Pool, number> = { ai: 0.005, whatsapp: 0.0157, email: 0, sms: 0.05 };

const share = z.number().min(0).max(1);
const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, "expected a lower-case SQL identifier ([a-z_][a-z0-9_]*)");

export const configSchema = z
  .object({
    databaseUrl: z
      .string({ error: "required (set it with: pulumi config set --secret guardian:databaseUrl postgres://...)" })
      .refine(isPostgresUrl, "expected a postgres:// or postgresql:// connection string"),
    creditModel: z.enum(CREDIT_MODELS).default("unified"),
    plans: z.record(z.string().regex(/^[a-z0-9_]+$/, "plan names are lower-case [a-z0-9_]"), planSchema).default(DEFAULT_PLANS),
    split: z
      .object({ ai: share, whatsapp: share, email: share, sms: share })
      .strict()
      .default(DEFAULT_SPLIT)
      .refine((s) => s.ai + s.whatsapp + s.email + s.sms <= 1 + 1e-9, {
        message: "shares must sum to at most 1",
      }),
    /** Merged with DEFAULT_ACTIONS action by action (see there). */
    actions: z
      .record(identifier, actionSchema)
      .default({})
      .transform((given) => ({ ...DEFAULT_ACTIONS, ...given })),
    providerCosts: z
      .object({ ai: z.number().min(0), whatsapp: z.number().min(0), email: z.number().min(0), sms: z.number().min(0) })
      .strict()
      .default(DEFAULT_PROVIDER_COSTS),
    marginTarget: z.number().gt(0).lt(1).default(0.82),
    /** advisory: plans below the target are reported; mandatory: they block the update (policy pack). */
    marginGate: z.enum(["advisory", "mandatory"]).default("advisory"),
    backfill: z
      .object({
        batchSize: z.number().int().positive().max(100000).default(1000),
        /** Pause between batches, to leave room to a busy production database. */
        pauseMs: z.number().int().min(0).max(60000).default(0),
        /** Organizations switched back per transaction when rolling back. */
        rollbackBatchSize: z.number().int().positive().max(100000).default(5000),
      })
      .strict()
      .default({ batchSize: 1000, pauseMs: 0, rollbackBatchSize: 5000 }),
    backup: z
      .object({
        /** Where the on-disk export goes (relative to the project). Gitignored. */
        exportDir: z.string().min(1).default(".guardian/backups"),
      })
      .strict()
      .default({ exportDir: ".guardian/backups" }),
    audit: z
      .object({ retentionDays: z.number().int().min(1).default(730) })
      .strict()
      .default({ retentionDays: 730 }),
    /** How the program reads the database's shape (lib/shape.ts); discovered when omitted. */
    schema: z
      .object({
        /** public.profiles column holding user / admin / super_admin: "role" or "user_role" (default: discovered). */
        profileRoleColumn: identifier.optional(),
        /** organization_credits column telling trials; null: none, trials by plan name (default: is_trial if present). */
        trialColumn: identifier.nullable().optional(),
        /** Plan names (trim + lower-case) that are trials when there is no trial column. */
        trialPlans: z
          .array(z.string().regex(/^[a-z0-9_]+$/, "plan names are lower-case [a-z0-9_]"))
          .min(1)
          .default(["trial_14"]),
      })
      .strict()
      .default({ trialPlans: ["trial_14"] }),
    rollback: z
      .object({
        /**
         * v1: consume_credits_rpc becomes the backed-up v1 again: body, signature, result and COMMENT byte for byte,
         * with a pinned search_path ending with pg_temp (sql/rollback/06_pin_v1.sql), so no caller's temporary objects
         * run as its owner; its other weaknesses come back (preview and the report list them). safe: a unified-model
         * function with v1's signature and result, but locked, caller-checked, never adding actions or giving free
         * credits (sql/rollback/safe_v1.sql). verbatim: the definition exactly as backed up, unpinned, only when asked;
         * preview, verification and the report flag it.
         */
        function: z.enum(["v1", "safe", "verbatim"]).default("v1"),
      })
      .strict()
      .default({ function: "v1" }),
    /**
     * `npm run watch` (contract: "Rollback triggers"): the plan's thresholds as defaults. A trigger fires when, over
     * the last windowSeconds of readings, the failed share of the synthetic calls exceeds failureShare, or their p95
     * exceeds latencyFactor x the baseline's p95 and the baseline by latencyFloorMs at least; neither fires on fewer
     * than minCalls calls. An invariant broken fires at once. One reading every intervalSeconds, making callsPerReading
     * timed synthetic calls. latencyFloorMs: the call takes about 0.1-0.3 ms in the server, where a scheduler's pause
     * alone doubles one call (measured at rest: a window's p95 up to 3x the baseline, 0.3 ms above it at most), while
     * the request the application waits for (its commit, the network) takes milliseconds; 0.5 ms above the baseline
     * is where a slowdown starts to be the application's, not the timer's.
     */
    watch: z
      .object({
        failureShare: z.number().min(0).max(1).default(0.1),
        latencyFactor: z.number().min(1).max(100).default(1.5),
        latencyFloorMs: z.number().min(0).max(10000).default(0.5),
        minCalls: z.number().int().min(1).max(100000).default(20),
        windowSeconds: z.number().int().min(1).max(3600).default(60),
        intervalSeconds: z.number().min(0.2).max(600).default(5),
        callsPerReading: z.number().int().min(1).max(1000).default(10),
      })
      .strict()
      .default({ failureShare: 0.1, latencyFactor: 1.5, latencyFloorMs: 0.5, minCalls: 20, windowSeconds: 60, intervalSeconds: 5, callsPerReading: 10 }),
    ddl: z
      .object({
        lockTimeoutMs: z.number().int().positive().max(60000).default(2000),
        retries: z.number().int().min(0).max(100).default(10),
      })
      .strict()
      .default({ lockTimeoutMs: 2000, retries: 10 }),
    /**
     * TLS for every connection the program makes (lib/pgConnection.ts has the rule, libpq's). Omitted: `sslmode` in
     * guardian:databaseUrl decides, else libpq's default `prefer`. A mode given here and a different sslmode in the
     * connection string are refused (one would be ignored).
     */
    tls: z
      .object({
        mode: z.enum(SSL_MODES).optional(),
        /** A file with the root certificate(s) to trust, PEM; relative to the project folder. */
        rootCert: z.string().min(1).optional(),
        /** The root certificate's PEM itself (e.g. from a CI secret; set it with --secret if it comes from one). */
        rootCertPem: z.string().includes("-----BEGIN CERTIFICATE-----", { message: "expected a PEM certificate (-----BEGIN CERTIFICATE-----)" }).optional(),
      })
      .strict()
      .refine((t) => !(t.rootCert && t.rootCertPem), { message: "give rootCert (a file) or rootCertPem, not both" })
      .optional(),
  })
  .strict();

export type GuardianConfig = z.infer<typeof configSchema>;

export class GuardianConfigError extends GuardianRefusal {
  constructor(public readonly problems: string[]) {
    super(`invalid guardian configuration:\n  ${problems.join("\n  ")}`, "GuardianConfigError");
  }
}

/** A postgres:// or postgresql:// URL with a host (or a host= parameter, for sockets). */
export function isPostgresUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === "postgres:" || u.protocol === "postgresql:") && (u.hostname !== "" || u.searchParams.has("host"));
  } catch {
    return false;
  }
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function valueAt(obj: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = obj;
  for (const p of path) cur = cur == null ? undefined : (cur as Record<PropertyKey, unknown>)[p];
  return cur;
}

/** Keys whose values are secrets: their values never appear in an error. */
const SECRET_KEYS = new Set(["databaseUrl", "tls.rootCertPem"]);
const isSecretPath = (path: PropertyKey[]) =>
  SECRET_KEYS.has(String(path[0] ?? "")) || SECRET_KEYS.has(path.slice(0, 2).map(String).join(".")) || (path.length === 1 && path[0] === "tls");

/**
 * Validates raw stack config (keys without the `guardian:` prefix; structured values as parsed objects or JSON strings).
 * Throws GuardianConfigError listing every problem, each naming its key.
 */
export function parseConfig(raw: Record<string, unknown>): GuardianConfig {
  const input: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    // Pulumi hands structured config over as JSON text.
    if (typeof v === "string" && /^[[{]/.test(v.trim())) {
      try {
        input[k] = JSON.parse(v);
      } catch {
        problems.push(`guardian:${k}: expected JSON, got ${describe(v)}`);
      }
    } else if (typeof v === "string" && k !== "databaseUrl" && /^-?\d+(\.\d+)?$/.test(v.trim())) {
      input[k] = Number(v);
    } else {
      input[k] = v;
    }
  }
  const r = configSchema.safeParse(input);
  if (!r.success) {
    for (const issue of r.error.issues) {
      const key = issue.path.length ? issue.path.map(String).join(".") : "(root)";
      const top = String(issue.path[0] ?? "");
      const msg = issue.message;
      if (issue.code === "unrecognized_keys") {
        const keys = (issue as any).keys as string[];
        for (const uk of keys) {
          const where = issue.path.length ? `${key}.${uk}` : uk;
          const pools = (issue.path.length && ["split", "providerCosts"].includes(top)) || /^(plans|actions)\./.test(key);
          const hint = pools ? ` (pools are ${POOLS.join(", ")})` : didYouMean(where);
          problems.push(`guardian:${where}: unknown key${hint}`);
        }
        continue;
      }
      const got = isSecretPath(issue.path) ? "" : `, got ${describe(valueAt(input, issue.path))}`;
      problems.push(`guardian:${key}: ${msg}${got}`);
    }
  }
  if (problems.length) throw new GuardianConfigError(problems);
  return r.data!;
}

/** The config namespace the program reads. The project is named guardian-credits: `pulumi config set creditModel ...`
 *  (no namespace) writes guardian-credits:creditModel, which checkConfigKeys refuses. */
export const CONFIG_NAMESPACE = "guardian";

function unwrap(t: any): any {
  for (let i = 0; i < 10 && t?._zod?.def; i++) {
    const d = t._zod.def;
    if (d.type === "default" || d.type === "optional" || d.type === "nullable" || d.type === "prefault") t = d.innerType;
    else if (d.type === "pipe") t = d.in;
    else break;
  }
  return t;
}

/** Every key the program reads, as paths under guardian: ("creditModel", "backfill", "backfill.batchSize", ...).
 *  Records (plans, actions: names are free) are listed by their own key only. */
export function knownConfigKeys(): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(configSchema.shape)) {
    out.push(k);
    const inner = unwrap(v);
    if (inner?._zod?.def?.type === "object" && !["split", "providerCosts"].includes(k)) {
      for (const sub of Object.keys(inner._zod.def.shape)) out.push(`${k}.${sub}`);
    }
  }
  return out;
}

function editDistance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

/**
 * The key the operator most likely meant, as a path under guardian:, or undefined when none is close: the same key in
 * another case or spelling (edit distance up to a third of its length, at least 2), or a nested key given by its last
 * part alone (batchSize -> backfill.batchSize).
 */
export function nearestConfigKey(given: string): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_\s]/g, "");
  const g = norm(given);
  let best: { key: string; d: number } | undefined;
  for (const k of knownConfigKeys()) {
    const leaf = k.includes(".") ? k.slice(k.lastIndexOf(".") + 1) : undefined;
    // A nested key matches on its whole path, or on its leaf when the given key has no dot (batchSize).
    let d = Math.min(editDistance(g, norm(k)), leaf && !given.includes(".") ? editDistance(g, norm(leaf)) : Infinity);
    // A part of a longer key (model -> creditModel) counts as nearly the same.
    if (d > 0 && g.length >= 4 && norm(k).includes(g)) d = Math.min(d, 0.5);
    if (!best || d < best.d) best = { key: k, d };
  }
  if (!best) return undefined;
  return best.d <= Math.max(2, Math.floor(g.length / 3)) ? best.key : undefined;
}

/** "; did you mean guardian:<key>?" for an unknown key, or "" when nothing is close. */
function didYouMean(given: string): string {
  const k = nearestConfigKey(given);
  if (k && k === given && k.includes(".")) {
    return `: set without --path, the key's name holds the dot; set it with --path: pulumi config set --path ${CONFIG_NAMESPACE}:${k} <value>`;
  }
  if (!k || k === given) return "";
  const path = k.includes(".") ? ` (set it with --path: pulumi config set --path ${CONFIG_NAMESPACE}:${k} <value>)` : "";
  return `; did you mean ${CONFIG_NAMESPACE}:${k}?${path}`;
}

/**
 * The stack's config keys outside guardian: that look meant for the program, each a problem naming the key and the one
 * meant: every key in the project's own namespace (what `pulumi config set <key>` writes without a namespace, never read
 * by the program) and keys in a namespace spelled like guardian (guardain:creditModel). Keys of other namespaces
 * (a provider's, pulumi:) are left alone. Unknown keys inside guardian: are parseConfig's.
 */
export function foreignConfigKeyProblems(allConfig: Record<string, unknown>, project: string): string[] {
  const problems: string[] = [];
  for (const full of Object.keys(allConfig).sort()) {
    const colon = full.indexOf(":");
    if (colon < 0) continue;
    const ns = full.slice(0, colon);
    const key = full.slice(colon + 1);
    if (ns === CONFIG_NAMESPACE) continue;
    const ours = ns === project;
    const nearNs = editDistance(ns.toLowerCase(), CONFIG_NAMESPACE) <= 2;
    if (!ours && !nearNs) continue;
    const meant = nearestConfigKey(key);
    const why = ours
      ? `never read: ${ns} is the project's name, and \`pulumi config set\` without a namespace writes there; the program reads namespace ${CONFIG_NAMESPACE}`
      : `never read: the program reads namespace ${CONFIG_NAMESPACE}, not ${ns}`;
    const fix = meant
      ? `; did you mean ${CONFIG_NAMESPACE}:${meant}? (pulumi config rm ${full}; pulumi config set${meant.includes(".") ? " --path" : ""} ${CONFIG_NAMESPACE}:${meant} <value>)`
      : `; remove it (pulumi config rm ${full}); the keys the program reads are listed in README.md, "Stacks, config and secrets"`;
    problems.push(`${full}: ${why}${fix}`);
  }
  return problems;
}

/** Allocation of a catalogue plan, by normalised name (trim + lower-case), or undefined for the split rule. */
export function normalisePlanName(name: string | null | undefined): string {
  return (name ?? "").trim().toLowerCase();
}

/**
 * guardian:tls as the connections use it: the root certificate read (rootCert, relative to baseDir) and checked to be a
 * PEM certificate. Undefined when guardian:tls is not set. Throws GuardianConfigError naming the key.
 */
export function tlsSettings(config: Pick<GuardianConfig, "tls">, baseDir: string = process.cwd()): TlsSettings | undefined {
  const t = config.tls;
  if (!t) return undefined;
  const out: TlsSettings = {};
  if (t.mode) out.mode = t.mode;
  let pem: string | undefined;
  let from: string | undefined;
  if (t.rootCert) {
    const fs = require("fs") as typeof import("fs");
    const file = require("path").resolve(baseDir, t.rootCert) as string;
    try {
      pem = fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new GuardianConfigError([
        `guardian:tls.rootCert: cannot read ${t.rootCert} (${errorCode(e) ?? errorMessage(e)}): the path is relative to the project folder`,
      ]);
    }
    from = `guardian:tls.rootCert (${t.rootCert})`;
  } else if (t.rootCertPem) {
    pem = t.rootCertPem.replace(/\\n/g, "\n"); // a PEM pasted on one line with literal \n
    from = "guardian:tls.rootCertPem";
  }
  if (pem !== undefined) {
    const key = t.rootCert ? "guardian:tls.rootCert" : "guardian:tls.rootCertPem";
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new GuardianConfigError([`${key}: ${t.rootCert ?? "the value"} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`]);
    }
    try {
      new (require("crypto") as typeof import("crypto")).X509Certificate(pem);
    } catch (e) {
      throw new GuardianConfigError([`${key}: ${t.rootCert ?? "the value"} is not a readable PEM certificate (${errorMessage(e)})`]);
    }
    out.ca = pem;
    out.caFrom = from;
  }
  return out;
}
