/**
 * What changes for the application around the credits (contract: "The application around the credits keeps
 * working"): each capability of the CRM's users and backend on the tables the program touches, as the CRM's own
 * policies and grants give it and as the program's give it, with the reason for every change. One list, read by
 * preview (one line each), the README's table "What changes for the application" (checked by test/unit/access.test.ts)
 * and proven as the real roles on the CRM's real schema by test/application.test.ts, before up, after up and after
 * the rollback.
 */

export type AccessChange = "kept" | "closed" | "appears";

export interface Capability {
  /** Who, doing what, in plain words. */
  capability: string;
  change: AccessChange;
  /** Why it changes: a leak, an escalation, or a restriction the contract requires; empty when kept. */
  reason: string;
}

export const CAPABILITIES: readonly Capability[] = [
  { capability: "a member edits its own profile (name and the like)", change: "kept", reason: "" },
  { capability: "a member reads its own profile and its own organization", change: "kept", reason: "" },
  { capability: "a new user inserts its own profile (client-side signup)", change: "kept", reason: "" },
  { capability: "a super_admin reads, creates, updates and deletes organizations", change: "kept", reason: "" },
  { capability: "a super_admin reads and deletes profiles", change: "kept", reason: "" },
  { capability: "anyone the database lets read credit_actions reads the price list", change: "kept", reason: "" },
  { capability: "the backend (service_role) inserts and updates organizations, profiles and credit rows", change: "kept", reason: "" },
  {
    capability: "a member sets its own profile's role (e.g. to super_admin)",
    change: "closed",
    reason: "escalation: the role decides rank, and the program's isolation trusts it",
  },
  {
    capability: "a member moves its own profile into another organization",
    change: "closed",
    reason: "escalation: the organization decides the tenant a member reads",
  },
  {
    capability: "a new user's own profile names an organization or a role above the lowest",
    change: "closed",
    reason: "escalation: joining any organization by signing up",
  },
  {
    capability: "any signed-in user reads every organization's credits",
    change: "closed",
    reason: "leak: the live policy asked only that the caller be signed in",
  },
  {
    capability: "anon or a signed-in user writes credit rows or log rows directly",
    change: "closed",
    reason: "required by the contract: credits move only through consume_credits_rpc; the log is append-only",
  },
  {
    capability: "anon, authenticated or service_role creates a trigger on, or truncates, a table the credit functions use",
    change: "closed",
    reason: "required by the contract: a trigger runs as the functions' owner; TRUNCATE bypasses row level security",
  },
  {
    capability: "a super_admin changes a profile's organization or role",
    change: "appears",
    reason: "the contract makes these columns the backend's or a super_admin's",
  },
];

/** One preview line per capability. */
export function accessLines(): string[] {
  return CAPABILITIES.map((c) => `access: ${c.change}: ${c.capability}${c.reason ? ` (${c.reason})` : ""}`);
}

/** The README's table, as markdown rows under its header. */
export function applicationChangesTable(): string {
  const rows = CAPABILITIES.map((c) => `| ${c.capability} | ${c.change} | ${c.reason || "–"} |`);
  return ["| capability | after `up` (and after rollback) | why |", "|---|---|---|", ...rows].join("\n");
}
