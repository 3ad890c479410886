/**
 * What the live v1 consume_credits_rpc does that callers may rely on, and what it does wrong, read from its
 * definition. Preview lists both before the switch (the behaviour changes v2 brings), and the rollback and the report
 * list the weaknesses that v1 brings back when it is restored byte for byte (guardian:rollback.function = v1).
 */

export interface V1Facts {
  /** Behaviours of v1 that v2 changes, one line each, for callers. */
  behaviourChanges: string[];
  /** What v1 does wrong, one line each. */
  weaknesses: string[];
}

/** `definition`: pg_get_functiondef text; `acl`: proacl as text (NULL = the default: EXECUTE for PUBLIC). */
export function v1Facts(definition: string, acl: string | null): V1Facts {
  const body = definition.replace(/--[^\n]*/g, " ").toLowerCase();
  const behaviourChanges: string[] = [];
  const weaknesses: string[] = [];
  const addsActions = /insert\s+into\s+(public\.)?credit_actions\b/.test(body);
  const freeCredits = /insert\s+into\s+(public\.)?organization_credits\b/.test(body);
  if (addsActions) {
    behaviourChanges.push(
      "an unknown action type: v1 adds it to credit_actions at a default cost and charges it; v2 refuses with UNKNOWN_ACTION and leaves the catalogue as it is",
    );
    weaknesses.push("adds any action type a caller sends to the price catalogue (at a default cost)");
  } else {
    behaviourChanges.push("an unknown action type: v2 refuses with UNKNOWN_ACTION");
  }
  if (freeCredits) {
    behaviourChanges.push("an organization without a credit row: v1 creates one with free credits on its first call; v2 refuses with NO_CREDIT_ACCOUNT");
    weaknesses.push("gives free credits to any organization id without a credit row");
  } else {
    behaviourChanges.push("an organization without a credit row: v2 refuses with NO_CREDIT_ACCOUNT");
  }
  behaviourChanges.push("an authenticated caller may consume only for the organization of its own profile (FORBIDDEN otherwise); anon and PUBLIC lose EXECUTE");
  behaviourChanges.push(
    "results keep v1's success, error, remaining_credits, credits_consumed and required_credits, and add error_code, consumed and remaining per pool",
  );
  if (!/for\s+(no\s+key\s+)?update/.test(body)) weaknesses.push("reads the balance without a row lock: concurrent calls lose updates and can overspend");
  if (!/auth\.uid\(\)|may_consume_for|auth\.role\(\)/.test(body))
    weaknesses.push("trusts the caller's organization id: any caller with EXECUTE can spend any organization's credits");
  if (/security\s+definer/.test(body) && !/set\s+search_path/.test(body)) weaknesses.push("SECURITY DEFINER without a pinned search_path");
  if (!/p_quantity/.test(body)) weaknesses.push("no quantity and no idempotency key: a retried call is charged twice");
  const grantees = (acl ?? "{=X/owner}")
    .replace(/[{}"]/g, "")
    .split(",")
    .map((e) => e.split("=")[0]);
  if (grantees.includes("") || grantees.includes("anon")) weaknesses.push("was executable by anon or PUBLIC (the rollback keeps that revoked)");
  return { behaviourChanges, weaknesses };
}
