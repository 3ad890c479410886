/**
 * The allocation rule of the contract, written a second time in TypeScript, independently of the SQL, so tests
 * compare the database against the spec rather than against itself.
 */
import { DEFAULT_PLANS, DEFAULT_SPLIT, POOLS, type Pool } from "../../lib/config";

export interface Pools {
  total: Record<Pool, number>;
  available: Record<Pool, number>;
  rule: string;
  clamped: boolean;
}

export function expectedPools(
  planName: string | null,
  totalCredits: number,
  creditsRemaining: number,
  plans = DEFAULT_PLANS,
  split: Record<Pool, number> = DEFAULT_SPLIT,
): Pools {
  const key = (planName ?? "").trim().toLowerCase();
  const plan = Object.hasOwn(plans, key) ? plans[key] : undefined;
  if (plan) {
    const p = { ai: plan.ai, whatsapp: plan.whatsapp, email: plan.email, sms: plan.sms };
    return { total: { ...p }, available: { ...p }, rule: `plan:${key}`, clamped: false };
  }
  const share = (n: number) => {
    const out = {} as Record<Pool, number>;
    let rest = n;
    for (const pool of POOLS) {
      if (pool === "ai") continue;
      out[pool] = Math.floor(n * split[pool] + 1e-9);
      rest -= out[pool];
    }
    out.ai = rest; // what rounding lost goes to ai
    return out;
  };
  return {
    total: share(Math.max(0, totalCredits)),
    available: share(Math.max(0, creditsRemaining)),
    rule: "split",
    clamped: totalCredits < 0 || creditsRemaining < 0,
  };
}
