/**
 * Plan margins from config, with every pool counted (pure; no database).
 *
 * The CRM reported 82.3% / 82.8% / 82.3% against an 82% target with SMS left out (facts.md). Here the cost of a plan is
 * the provider cost of its whole allocation, summed over ALL FOUR pools, and each finding says what SMS contributed,
 * so a report that drops a pool cannot pass for this one. sql/margins/01_plan_margins.sql computes the same figures in
 * the database (view public.plan_margins); test/margins.test.ts checks they agree.
 */
import { POOLS, type GuardianConfig, type Pool } from "./config";

export interface PlanMargin {
  plan: string;
  /** EUR per month; null for a custom price. */
  priceEur: number | null;
  /** Provider cost of the full allocation, per pool (EUR, rounded to 6 decimals). */
  poolCostEur: Record<Pool, number>;
  /** Sum of poolCostEur over all four pools (EUR, rounded to 6 decimals). */
  costEur: number;
  /** (price - cost) / price, unrounded; null when not comparable. */
  margin: number | null;
  /** 100 x margin rounded to 2 decimals, as the view's margin_pct; null when not comparable. */
  marginPct: number | null;
  /** false for a custom price (null) or a free plan (price 0): no margin can be computed, the plan is still listed. */
  comparable: boolean;
  /** margin < marginTarget; null when not comparable. */
  belowTarget: boolean | null;
  /** Why the plan is not comparable; absent when it is. */
  notComparableReason?: string;
}

type MarginInputs = Pick<GuardianConfig, "plans" | "providerCosts" | "marginTarget">;

/** Rounds half away from zero to `digits` decimals, the way Postgres rounds numeric. */
export function roundTo(x: number, digits: number): number {
  const f = 10 ** digits;
  const y = Math.abs(x) * f;
  // Tame binary noise (5.855 is 5.8549999... in floating point) before rounding.
  const r = Math.round(Number(y.toPrecision(15)));
  return (Math.sign(x) * r) / f || 0;
}

/** Margins of every plan of the catalogue, in catalogue order. Nothing is left out. */
export function planMargins(config: MarginInputs): PlanMargin[] {
  return Object.entries(config.plans).map(([plan, p]) => {
    const poolCostEur = Object.fromEntries(POOLS.map((pool) => [pool, roundTo(p[pool] * config.providerCosts[pool], 6)])) as Record<Pool, number>;
    const costEur = roundTo(
      POOLS.reduce((s, pool) => s + p[pool] * config.providerCosts[pool], 0),
      6,
    );
    const base = { plan, priceEur: p.priceEur, poolCostEur, costEur };
    if (p.priceEur === null || p.priceEur === 0) {
      return {
        ...base,
        margin: null,
        marginPct: null,
        comparable: false,
        belowTarget: null,
        notComparableReason: p.priceEur === null ? "custom price" : "price EUR 0.00",
      };
    }
    const margin = (p.priceEur - costEur) / p.priceEur;
    return { ...base, margin, marginPct: roundTo(100 * margin, 2), comparable: true, belowTarget: margin < config.marginTarget };
  });
}

const eur = (x: number) => `EUR ${roundTo(x, 2).toFixed(2)}`;
const pct = (fraction: number) => `${roundTo(100 * fraction, 1).toFixed(1)}%`;

/**
 * The sentence for one plan, e.g.
 *   starter: margin 69.2% < target 82.0% (cost EUR 5.86 of EUR 19.00; sms EUR 2.50 counted)
 *   enterprise: margin not comparable (custom price; cost EUR 51.34 at full use; sms EUR 25.00 counted)
 * SMS is named in every sentence because it is the pool the CRM's own report left out.
 */
export function describeMargin(m: PlanMargin, marginTarget: number): string {
  const sms = `sms ${eur(m.poolCostEur.sms)} counted`;
  if (!m.comparable) return `${m.plan}: margin not comparable (${m.notComparableReason}; cost ${eur(m.costEur)} at full use; ${sms})`;
  const op = m.belowTarget ? "<" : ">=";
  return `${m.plan}: margin ${pct(m.margin!)} ${op} target ${pct(marginTarget)} (cost ${eur(m.costEur)} of ${eur(m.priceEur!)}; ${sms})`;
}

/** One sentence per plan (describeMargin): below-target plans first, then non-comparable ones, then the rest. */
export function marginFindings(config: MarginInputs): string[] {
  const rank = (m: PlanMargin) => (m.belowTarget ? 0 : m.comparable ? 2 : 1);
  return planMargins(config)
    .map((m, i) => ({ m, i }))
    .sort((a, b) => rank(a.m) - rank(b.m) || a.i - b.i)
    .map(({ m }) => describeMargin(m, config.marginTarget));
}

/** Names of the comparable plans whose margin is below the target. */
export function plansBelowTarget(config: MarginInputs): string[] {
  return planMargins(config)
    .filter((m) => m.belowTarget)
    .map((m) => m.plan);
}
