/**
 * The seed's generator: synthetic Guardian organizations as column arrays (what unnest() takes), without a database.
 *
 * Determinism: organization number i of seed S is a pure function of (S, i): its attributes come from a mulberry32
 * stream seeded with (S, i), its ids are UUIDv5 of "guardian-seed/S/org/i" (a 32-bit PRNG state would repeat uuids
 * within 100,000 orgs; a name-based UUID cannot). Timestamps are offsets from an anchor, the start of the current UTC
 * day (pinned with `anchor` in-process), so that an active trial is active and an expired one expired whenever it runs.
 *
 * The mix (PLAN_MIX below) always starts with SHOWCASE, one organization per case the migration must handle, so any
 * N >= SHOWCASE.length contains every case, among them EXACTLY ONE organization with a negative credits_remaining
 * (per seed). plan_name is NOT NULL in the schema: "no plan" is stored as the empty string ''.
 */
import * as crypto from "crypto";

// ---------------------------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: a small, fast 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** murmur3's finaliser: spreads (seed, index) over 32 bits so neighbouring orgs get unrelated streams. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const UUID_NAMESPACE = Buffer.from("7c1e4b1a9d2f4e0b8a3c5d6e7f809142", "hex");

/** RFC 4122 version 5 (name-based, SHA-1) uuid. */
export function uuidV5(name: string): string {
  const h = crypto.createHash("sha1").update(UUID_NAMESPACE).update(name).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString("hex", 0, 16);
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The mix

/** Unified credits of a published plan: the sum of its pools in facts.md (the unified figure itself is not published). */
const PUBLISHED_TOTALS: Record<string, number> = {
  starter: 200 + 150 + 1000 + 50,
  professional: 400 + 300 + 3000 + 100,
  business: 800 + 600 + 8000 + 250,
  premium: 1500 + 1200 + 20000 + 500,
  enterprise: 1500 + 1200 + 20000 + 500,
  trial_14: 50 + 25 + 200 + 5,
};

type R = () => number;
const int = (r: R, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

/** How total_credits is drawn for a plan name (after trim + lower-case for the published ones). */
function totalFor(plan: string, r: R): number {
  const p = plan.trim().toLowerCase();
  if (p === "enterprise") return PUBLISHED_TOTALS.enterprise * int(r, 1, 4); // custom contracts: 1-4x premium
  if (p in PUBLISHED_TOTALS) return PUBLISHED_TOTALS[p];
  if (p === "free") return 100;
  if (p === "custom") return int(r, 10, 600) * 100;
  if (p === "system admin") return 1_000_000;
  if (p === "") return [0, 100, 250, 500, 1000][int(r, 0, 4)];
  return int(r, 200, 10_000); // unknown names: legacy and hand-made plans
}

export interface MixEntry {
  /** plan_name exactly as stored. */
  plan: string;
  /** Relative weight among the organizations after the showcase. */
  weight: number;
  /** A trial (is_trial, 14-day cycle); `expiredShare` of them ended before the anchor. */
  trial?: boolean;
  /** Split-rule plan (not in the catalogue after trim + lower-case). Informational. */
  split?: boolean;
}

export const PLAN_MIX: MixEntry[] = [
  // Published plans (the catalogue), as the application writes them.
  { plan: "starter", weight: 170 },
  { plan: "professional", weight: 130 },
  { plan: "business", weight: 80 },
  { plan: "premium", weight: 60 },
  { plan: "enterprise", weight: 20 },
  { plan: "trial_14", weight: 110, trial: true },
  // Published plans in odd case or with stray spaces: they match the catalogue after trim + lower-case.
  { plan: "STARTER ", weight: 10 },
  { plan: "Professional", weight: 10 },
  { plan: " Premium", weight: 8 },
  { plan: "Business", weight: 5 },
  { plan: "ENTERPRISE", weight: 3 },
  { plan: "Trial_14 ", weight: 4, trial: true },
  // Everything else gets the 40/30/30 split of its own credits.
  { plan: "free", weight: 200, split: true },
  { plan: "custom", weight: 40, split: true },
  { plan: "system admin", weight: 1, split: true },
  { plan: "", weight: 25, split: true }, // "NULL plan": plan_name is NOT NULL, the application stores ''
  { plan: "legacy_gold", weight: 30, split: true },
  { plan: "basic", weight: 30, split: true },
  { plan: "pro", weight: 25, split: true },
  { plan: "team_2023", weight: 10, split: true },
  { plan: "Premium Plus", weight: 5, split: true }, // looks like a plan, is not one
];
const MIX_TOTAL = PLAN_MIX.reduce((s, m) => s + m.weight, 0);
const EXPIRED_TRIAL_SHARE = 0.35;

interface Showcase {
  plan: string;
  trial?: "active" | "expired";
  total?: number;
  remaining?: number;
  superAdmin?: boolean;
  noProfile?: boolean;
}

/** The first organizations of every seed: one per case the migration must handle. */
export const SHOWCASE: Showcase[] = [
  { plan: "starter" },
  { plan: "professional" },
  { plan: "business" },
  { plan: "premium" },
  { plan: "enterprise" },
  { plan: "trial_14", trial: "active" },
  { plan: "trial_14", trial: "expired" },
  { plan: "free", total: 100, remaining: 7 }, // 7 x 40/30/30 = 2 + 2 + 2, one unit of remainder
  { plan: "custom", total: 20001, remaining: 12345 },
  { plan: "system admin", superAdmin: true },
  { plan: "" },
  { plan: "legacy_gold", noProfile: true },
  { plan: " Premium" },
  { plan: "STARTER " },
  { plan: "Professional" },
  { plan: "free", total: 100, remaining: -3 }, // the one negative balance: the backfill floors it at 0 and reports it
];
const NEGATIVE_INDEX = SHOWCASE.findIndex((s) => (s.remaining ?? 0) < 0);

const ACTIONS: { type: string; cost: number; weight: number }[] = [
  { type: "ai_chat", cost: 1, weight: 35 },
  { type: "email_send", cost: 1, weight: 20 },
  { type: "whatsapp_message", cost: 1, weight: 15 },
  { type: "ai_assistant", cost: 2, weight: 10 },
  { type: "automation_run", cost: 3, weight: 8 },
  { type: "sms_send", cost: 2, weight: 5 },
  { type: "form_generation", cost: 5, weight: 4 },
  { type: "bulk_email", cost: 10, weight: 3 },
];
const ACTIONS_TOTAL = ACTIONS.reduce((s, a) => s + a.weight, 0);

const NAME_A = [
  "Northwind",
  "Blue Harbor",
  "Acme",
  "Lumen",
  "Vertex",
  "Cedar",
  "Atlas",
  "Nimbus",
  "Helios",
  "Orchard",
  "Granite",
  "Silver Fern",
  "Brightside",
  "Kestrel",
  "Maple",
  "Quantum",
  "Riverbend",
  "Solstice",
  "Tidewater",
  "Evergreen",
];
const NAME_B = [
  "Dental",
  "Realty",
  "Fitness",
  "Legal",
  "Consulting",
  "Bakery",
  "Logistics",
  "Studio",
  "Clinic",
  "Motors",
  "Travel",
  "Academy",
  "Florist",
  "Analytics",
  "Insurance",
  "Events",
];
const NAME_C = ["", "", "", " GmbH", " SL", " Ltd", " & Co", " S.A.", " BV", " Srl"];

const DAY = 86_400_000;

// ---------------------------------------------------------------------------------------------------------------
// Generation: one organization at a time into column arrays (what unnest() takes)

export class Batch {
  orgId: string[] = [];
  orgName: string[] = [];
  orgSlug: string[] = [];
  orgCreated: string[] = [];
  plan: string[] = [];
  total: number[] = [];
  remaining: number[] = [];
  cycleStart: string[] = [];
  cycleEnd: (string | null)[] = [];
  isTrial: boolean[] = [];
  creditsUpdated: string[] = [];
  expired: boolean[] = [];
  userId: string[] = [];
  userOrg: string[] = [];
  userRole: string[] = [];
  userEmail: string[] = [];
  userCreated: string[] = [];
  logOrg: string[] = [];
  logAction: string[] = [];
  logConsumed: number[] = [];
  logRemaining: number[] = [];
  logSuccess: boolean[] = [];
  logError: (string | null)[] = [];
  logAt: string[] = [];

  get size(): number {
    return this.orgId.length;
  }

  /** The same batch restricted to the given organizations (those not already in the database). */
  only(ids: Set<string>): Batch {
    const b = new Batch();
    const orgCols = [
      "orgId",
      "orgName",
      "orgSlug",
      "orgCreated",
      "plan",
      "total",
      "remaining",
      "cycleStart",
      "cycleEnd",
      "isTrial",
      "creditsUpdated",
      "expired",
    ] as const;
    this.orgId.forEach((id, i) => {
      if (ids.has(id)) for (const c of orgCols) (b[c] as unknown[]).push(this[c][i]);
    });
    this.userOrg.forEach((o, i) => {
      if (!ids.has(o)) return;
      for (const c of ["userId", "userOrg", "userRole", "userEmail", "userCreated"] as const) (b[c] as unknown[]).push(this[c][i]);
    });
    this.logOrg.forEach((o, i) => {
      if (!ids.has(o)) return;
      for (const c of ["logOrg", "logAction", "logConsumed", "logRemaining", "logSuccess", "logError", "logAt"] as const) {
        (b[c] as unknown[]).push(this[c][i]);
      }
    });
    return b;
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

function pickPlan(r: R): MixEntry {
  let x = r() * MIX_TOTAL;
  for (const m of PLAN_MIX) if ((x -= m.weight) < 0) return m;
  return PLAN_MIX[PLAN_MIX.length - 1];
}

function pickAction(r: R) {
  let x = r() * ACTIONS_TOTAL;
  for (const a of ACTIONS) if ((x -= a.weight) < 0) return a;
  return ACTIONS[0];
}

/** Appends organization `index` of `seed` to the batch. */
function generateOrg(seed: number, index: number, anchorMs: number, b: Batch): void {
  const r = mulberry32(fmix32(fmix32(seed ^ 0x5eed) ^ Math.imul(index + 1, 0x9e3779b1)));
  const show: Showcase | undefined = SHOWCASE[index];
  let plan: string;
  let trial: "active" | "expired" | undefined;
  if (show) {
    plan = show.plan;
    trial = show.trial;
  } else {
    const m = pickPlan(r);
    plan = m.plan;
    if (m.trial) trial = r() < EXPIRED_TRIAL_SHARE ? "expired" : "active";
  }
  const p = plan.trim().toLowerCase();

  const id = uuidV5(`guardian-seed/${seed}/org/${index}`);
  const a = NAME_A[int(r, 0, NAME_A.length - 1)];
  const nb = NAME_B[int(r, 0, NAME_B.length - 1)];
  const name = `${a} ${nb}${NAME_C[int(r, 0, NAME_C.length - 1)]}`;
  const slug = `${`${a}-${nb}`.toLowerCase().replace(/[^a-z0-9]+/g, "-")}-s${seed}-${index}`;

  // Billing cycle: 14 days for a trial (active: ends after the anchor; expired: ended 1-47 days before), monthly for
  // paid plans, none for free and system admin. A trial's organization signed up when its trial began.
  let cycleStart: number;
  let cycleEnd: number | null;
  if (trial === "active") {
    cycleStart = anchorMs - int(r, 0, 12) * DAY - int(r, 0, DAY - 1);
    cycleEnd = cycleStart + 14 * DAY;
  } else if (trial === "expired") {
    cycleStart = anchorMs - int(r, 15, 60) * DAY - int(r, 0, DAY - 1);
    cycleEnd = cycleStart + 14 * DAY;
  } else {
    cycleStart = anchorMs - int(r, 0, 29) * DAY - int(r, 0, DAY - 1);
    cycleEnd = p === "free" || p === "system admin" ? null : cycleStart + 30 * DAY;
  }
  const created = trial ? cycleStart - int(r, 0, 3_600_000) : Math.min(cycleStart, anchorMs - int(r, 30, 900) * DAY - int(r, 0, DAY - 1));

  // Balances: untouched, partly spent, nearly or fully exhausted. Never negative outside the showcase.
  const total = show?.total ?? totalFor(plan, r);
  let remaining: number;
  if (show?.remaining !== undefined) remaining = show.remaining;
  else {
    const u = r();
    if (u < 0.25) remaining = total;
    else if (u < 0.85) remaining = int(r, 0, total);
    else if (u < 0.95) remaining = Math.min(total, int(r, 0, 9));
    else remaining = 0;
  }

  // Consumption history of this cycle, built backwards from the current balance so every row's credits_remaining
  // is what v1 would have written: successes only within what was spent, then a refused attempt when the balance
  // is below the cost of the next action.
  const logs: { action: string; consumed: number; remaining: number; success: boolean }[] = [];
  if (index === NEGATIVE_INDEX) {
    // How it went below zero is not in the data (a manual correction, an older client); v1 refuses from then on.
    logs.push({ action: "ai_chat", consumed: 0, remaining, success: false });
    logs.push({ action: "email_send", consumed: 0, remaining, success: false });
  } else if (r() >= 0.3) {
    const n = int(r, 1, 6);
    let budget = total - Math.max(remaining, 0);
    let after = remaining;
    const back: typeof logs = [];
    for (let k = 0; k < n; k++) {
      const act = pickAction(r);
      if (act.cost > budget) break;
      back.push({ action: act.type, consumed: act.cost, remaining: after, success: true });
      after += act.cost;
      budget -= act.cost;
    }
    logs.push(...back.reverse());
    if (remaining < 10 && r() < 0.8) {
      const refused = ACTIONS.filter((x) => x.cost > remaining);
      const act = refused[int(r, 0, refused.length - 1)];
      logs.push({ action: act.type, consumed: 0, remaining, success: false });
    }
  }
  const since = cycleStart;
  const span = Math.max(1, Math.min(anchorMs, cycleEnd ?? anchorMs) - since);
  let lastAt = since;
  const offsets = logs.map(() => Math.floor(r() * span)).sort((x, y) => x - y);
  logs.forEach((l, k) => {
    lastAt = since + offsets[k];
    b.logOrg.push(id);
    b.logAction.push(l.action);
    b.logConsumed.push(l.consumed);
    b.logRemaining.push(l.remaining);
    b.logSuccess.push(l.success);
    b.logError.push(l.success ? null : "Insufficient credits");
    b.logAt.push(iso(lastAt));
  });

  b.orgId.push(id);
  b.orgName.push(name);
  b.orgSlug.push(slug);
  b.orgCreated.push(iso(created));
  b.plan.push(plan);
  b.total.push(total);
  b.remaining.push(remaining);
  b.cycleStart.push(iso(cycleStart));
  b.cycleEnd.push(cycleEnd === null ? null : iso(cycleEnd));
  b.isTrial.push(trial !== undefined);
  b.creditsUpdated.push(iso(lastAt));
  b.expired.push(trial === "expired");

  // Profiles: an admin and 0-3 users; 12% of organizations have nobody yet; system admin orgs have a super_admin.
  const roles: string[] = [];
  if (show?.superAdmin || p === "system admin") roles.push("super_admin", "admin");
  else if (!show?.noProfile && (show || r() >= 0.12)) {
    roles.push("admin");
    for (let k = Math.floor(r() * r() * 4); k > 0; k--) roles.push("user");
  }
  roles.forEach((role, j) => {
    b.userId.push(uuidV5(`guardian-seed/${seed}/org/${index}/user/${j}`));
    b.userOrg.push(id);
    b.userRole.push(role);
    b.userEmail.push(`user-s${seed}-${index}-${j}@example.invalid`);
    // The first profile signed the organization up; the others joined later, before the anchor.
    b.userCreated.push(iso(created + (j === 0 ? int(r, 0, 600_000) : Math.floor(r() * (anchorMs - created)))));
  });
}

/** The generated data for organizations [from, to) of a seed, without touching a database (tests, inspection). */
export function generate(seed: number, from: number, to: number, anchor: Date = startOfUtcDay()): Batch {
  const b = new Batch();
  for (let i = from; i < to; i++) generateOrg(seed, i, anchor.getTime(), b);
  return b;
}

export function startOfUtcDay(d: Date = new Date()): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
}
