/**
 * The CRM's reads as its users make them (issue 24, item 3): what the dashboard asks of the tables the program puts
 * policies on. bench/crmReads.ts times them; test/policy-plans.test.ts checks that the program's policies leave each
 * one the plan it has with no policy in the way. `:org` is the reader's organization (pgbench's variable syntax).
 */
export const READS = ["credit row", "last 50 logs", "last 50 logs, CRM columns", "team profiles", "plan totals"] as const;
export type Read = (typeof READS)[number];

/** Who makes the read in the CRM: a member of the organization, or a super_admin (totals over every organization). */
export const READER: Record<Read, "member" | "super_admin"> = {
  "credit row": "member",
  "last 50 logs": "member",
  "last 50 logs, CRM columns": "member",
  "team profiles": "member",
  "plan totals": "super_admin",
};

export const STATEMENT: Record<Read, string> = {
  "credit row": "SELECT * FROM public.organization_credits WHERE organization_id = :org::uuid;",
  "last 50 logs": "SELECT * FROM public.credit_consumption_logs WHERE organization_id = :org::uuid ORDER BY created_at DESC LIMIT 50;",
  // The same read naming the eight columns the CRM's log has before `up` (harness/realCrm.ts): `SELECT *` also returns
  // the ten the contract adds, which the copy taken before `up` does not have (bench/results: where the time goes).
  "last 50 logs, CRM columns":
    "SELECT id, organization_id, action_type, credits_consumed, credits_remaining, success, error_message, created_at FROM public.credit_consumption_logs WHERE organization_id = :org::uuid ORDER BY created_at DESC LIMIT 50;",
  "team profiles": "SELECT * FROM public.profiles WHERE organization_id = :org::uuid;",
  "plan totals": "SELECT plan_name, count(*), sum(credits_remaining) FROM public.organization_credits GROUP BY plan_name;",
};

/** The statement with the organization as the parameter $1 (for node-postgres), and its parameters. */
export function statementWith(read: Read, org: string): { text: string; values: string[] } {
  const text = STATEMENT[read].replace(":org::uuid", "$1::uuid").replace(/;$/, "");
  return { text, values: text.includes("$1") ? [org] : [] };
}
