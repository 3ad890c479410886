/**
 * What changes for the application around the credits (contract: "The application around the credits keeps
 * working"). Three things, each in one place here:
 *   - CAPABILITIES: each capability in plain words, kept, closed (with its reason: a leak, an escalation, or a
 *     restriction the contract requires) or appearing; the closed and appearing ones say which cells of the access
 *     matrix they cover. The README's table "What changes for the application" is this list
 *     (test/unit/access.test.ts).
 *   - programAccess: what the program's grants, policies and guard trigger (sql/tenancy/) allow, per cell of the
 *     matrix lib/accessProbe.ts finds by acting as the roles. Verification probes the database after `up` and after a
 *     rollback and fails when it differs (providers/verification.ts).
 *   - compareAccess: before (probed in preview, read-only) against after (programAccess): every change named, and a
 *     capability taken away that no closed entry covers is a no-go (lib/preflight.ts, gate "access").
 */
import type { AccessMatrix, Cell } from "./accessProbe";
import { cellName } from "./accessProbe";

export type AccessChange = "kept" | "closed" | "appears";

export interface Capability {
  /** Who, doing what, in plain words. */
  capability: string;
  change: AccessChange;
  /** Why it changes: a leak, an escalation, or a restriction the contract requires; empty when kept. */
  reason: string;
  /** The cells of the access matrix this change covers (closed and appearing entries). */
  covers?: (c: Pick<Cell, "role" | "table" | "command" | "scope">) => boolean;
}

const TENANT_TABLES = ["organizations", "profiles", "organization_credits", "credit_consumption_logs"];
const CREDIT_TABLES = ["organization_credits", "credit_consumption_logs", "credit_actions"];
const isWrite = (c: Pick<Cell, "command">) => c.command !== "SELECT";
const signedIn = (c: Pick<Cell, "role">) => c.role !== "anon" && c.role !== "service_role";

export const CAPABILITIES: readonly Capability[] = [
  { capability: "a member edits its own profile (name and the like)", change: "kept", reason: "" },
  { capability: "a member reads its own profile and its own organization", change: "kept", reason: "" },
  { capability: "a new user inserts its own profile (client-side signup)", change: "kept", reason: "" },
  { capability: "a super_admin reads, creates, updates and deletes organizations", change: "kept", reason: "" },
  { capability: "a super_admin reads and deletes profiles", change: "kept", reason: "" },
  { capability: "anyone the database lets read credit_actions reads the price list", change: "kept", reason: "" },
  { capability: "the backend (service_role) reads and writes organizations, profiles, credit rows and the price list", change: "kept", reason: "" },
  {
    capability: "a member sets its own profile's role (e.g. to super_admin) or moves it into another organization",
    change: "closed",
    reason: "escalation: the role decides rank and the organization the tenant; the program's isolation trusts both",
    covers: (c) => c.table === "profiles" && c.command === "UPDATE tenancy" && c.scope === "own" && signedIn(c) && c.role !== "super_admin",
  },
  {
    capability: "a new user's own profile names an organization or a role above the lowest",
    change: "closed",
    reason: "escalation: joining any organization by signing up",
    covers: (c) => c.table === "profiles" && c.command === "INSERT" && c.scope === "elevated" && c.role !== "super_admin" && c.role !== "service_role",
  },
  {
    capability: "a user other than a super_admin reads another organization's rows (credits, logs, organization, profiles), or anon reads any",
    change: "closed",
    reason: "leak: the live credit policy asked only that the caller be signed in; tenants' rows are their own",
    covers: (c) =>
      c.command === "SELECT" && TENANT_TABLES.includes(c.table) && (c.role === "anon" || (signedIn(c) && c.role !== "super_admin" && c.scope === "other")),
  },
  {
    capability: "anon or a signed-in user writes credit rows, log rows or the price list directly",
    change: "closed",
    reason: "required by the contract: credits move only through consume_credits_rpc; the log is append-only; no user writes the price list",
    covers: (c) => isWrite(c) && CREDIT_TABLES.includes(c.table) && c.role !== "service_role",
  },
  {
    capability: "a user other than a super_admin writes another user's profile (a teammate's or another organization's), or anon writes any",
    change: "closed",
    reason: "escalation: a profile is its user's, the backend's or a super_admin's; the CRM's own policies allow no one else",
    covers: (c) =>
      isWrite(c) && c.table === "profiles" && (c.role === "anon" || (signedIn(c) && c.role !== "super_admin" && (c.scope === "other" || c.scope === "team"))),
  },
  {
    capability: "a user other than a super_admin creates, changes or deletes an organization, its own included",
    change: "closed",
    reason:
      "escalation: the organization row holds what the tenant is sold (plan, status, owner); the CRM's own policies give it to super_admins, and the backend creates organizations",
    covers: (c) => c.table === "organizations" && isWrite(c) && c.role !== "super_admin" && c.role !== "service_role",
  },
  {
    capability: "a member reads its teammates' profiles; a user deletes its own profile",
    change: "appears",
    reason: "the team list and leaving: kept where the CRM allowed them, appearing where its policies did not",
    covers: (c) =>
      c.table === "profiles" &&
      signedIn(c) &&
      c.role !== "super_admin" &&
      ((c.command === "SELECT" && c.scope === "team") || (c.command === "DELETE" && c.scope === "own")),
  },
  {
    capability: "the backend (service_role) inserts, updates or deletes consumption log rows directly",
    change: "closed",
    reason: "required by the contract: the log is append-only, and a row inserted by hand would be a forged success that rollback and verification count",
    covers: (c) => c.role === "service_role" && c.table === "credit_consumption_logs" && isWrite(c),
  },
  {
    capability: "the backend deletes an organization whose consumption records would go with it (ON DELETE CASCADE)",
    change: "closed",
    reason: "required by the contract: records leave only by the retention purge and erasure; an organization without records still leaves",
  },
  {
    capability: "anon, authenticated or service_role creates a trigger on, or truncates, a table the credit functions use",
    change: "closed",
    reason: "required by the contract: a trigger runs as the functions' owner; TRUNCATE bypasses row level security",
  },
  {
    capability: "a super_admin reads, inserts and changes any profile, its organization and role included",
    change: "appears",
    reason: "the contract makes these columns the backend's or a super_admin's, and a super_admin reads all",
    covers: (c) => c.table === "profiles" && c.role === "super_admin",
  },
];

/**
 * What the program's grants, policies and guard trigger allow in one cell (sql/tenancy/): `found` is the cell as
 * probed (before `up`, or now). Grants the program does not change (organizations and profiles; anon's SELECT on the
 * price list) are taken as found; service_role bypasses row level security and keeps whatever it had but writing log rows.
 */
export function programAccess(found: Cell): boolean {
  const { role, table, command, scope } = found;
  // The backend keeps what it had, except writing log rows (sql/audit/01_append_only.sql revokes them).
  if (role === "service_role") return table === "credit_consumption_logs" && command !== "SELECT" ? false : found.allowed;
  const sa = role === "super_admin";
  const authenticated = role !== "anon";
  const own = scope === "own";
  switch (table) {
    case "organizations":
      return found.privilege && authenticated && (command === "SELECT" ? own || sa : sa);
    case "profiles":
      if (!found.privilege || !authenticated) return false;
      if (command === "SELECT") return own || scope === "team" || sa;
      if (command === "UPDATE" || command === "DELETE") return own || sa;
      if (command === "UPDATE tenancy") return sa; // the guard trigger refuses the others
      return scope === "own" || sa; // INSERT: its own, without organization, at the lowest role
    case "organization_credits":
    case "credit_consumption_logs":
      return command === "SELECT" && authenticated && (own || sa);
    case "credit_actions":
      return command === "SELECT" && (authenticated || found.privilege);
    default:
      return found.allowed;
  }
}

/** The cells of a probed matrix that differ from what the program's policies allow, one line each (verification fails
 *  on them; the report lists them). */
export function accessMismatches(m: AccessMatrix): string[] {
  return m.cells
    .filter((x) => x.allowed !== programAccess(x))
    .map(
      (x) =>
        `access: ${x.role} ${cellName(x)} is ${x.allowed ? "allowed" : `denied (${x.why ?? "?"})`}, the program's policies say ${x.allowed ? "denied" : "allowed"}`,
    );
}

export interface AccessChangeLine {
  cell: string;
  role: string;
  before: boolean;
  after: boolean;
  /** The capability that names it, when one does. */
  capability?: string;
  reason?: string;
}

export interface AccessComparison {
  /** Cells compared; kept: the same before and after. */
  cells: number;
  kept: number;
  closed: AccessChangeLine[];
  appears: AccessChangeLine[];
  /** Taken away, and no closed capability covers it: the go/no-go refuses. */
  lost: AccessChangeLine[];
}

/** Before (probed) against after (programAccess of each cell as found, or a second probe). */
export function compareAccess(before: AccessMatrix, after?: AccessMatrix, capabilities: readonly Capability[] = CAPABILITIES): AccessComparison {
  const afterOf = new Map(after?.cells.map((c) => [`${c.role} ${cellName(c)}`, c.allowed]));
  const out: AccessComparison = { cells: 0, kept: 0, closed: [], appears: [], lost: [] };
  for (const c of before.cells) {
    const key = `${c.role} ${cellName(c)}`;
    const now = after ? afterOf.get(key) : programAccess(c);
    if (now === undefined) continue;
    out.cells++;
    if (now === c.allowed) {
      out.kept++;
      continue;
    }
    const change: AccessChange = now ? "appears" : "closed";
    const named = capabilities.find((k) => k.change === change && k.covers?.(c));
    const line: AccessChangeLine = { cell: cellName(c), role: c.role, before: c.allowed, after: now, capability: named?.capability, reason: named?.reason };
    if (change === "appears") out.appears.push(line);
    else if (named) out.closed.push(line);
    else out.lost.push(line);
  }
  return out;
}

/** Preview's lines: the comparison, every change named, then the capabilities in plain words. */
export function accessLines(cmp?: AccessComparison): string[] {
  const out: string[] = [];
  if (cmp) {
    out.push(
      `access matrix (probed as anon, a member, an organization admin, a super_admin, a user without a profile and service_role; read-only): ` +
        `${cmp.cells} cells, ${cmp.kept} kept, ${cmp.closed.length} closed, ${cmp.appears.length} appear, ${cmp.lost.length} lost without a reason`,
    );
    const grouped = (lines: AccessChangeLine[]) => {
      const by = new Map<string, AccessChangeLine[]>();
      for (const l of lines) by.set(l.capability ?? "", [...(by.get(l.capability ?? "") ?? []), l]);
      return [...by.values()];
    };
    const cells = (ls: AccessChangeLine[]) => ls.map((l) => `${l.role} ${l.cell}`).join("; ");
    for (const ls of grouped(cmp.closed)) out.push(`access: closed: ${ls[0].capability} (${ls[0].reason}): ${cells(ls)}`);
    for (const ls of grouped(cmp.appears))
      out.push(
        `access: appears: ${ls[0].capability ?? "allowed by the program's policies, denied before"}${ls[0].reason ? ` (${ls[0].reason})` : ""}: ${cells(ls)}`,
      );
    for (const l of cmp.lost)
      out.push(`access: LOST: ${l.role} ${l.cell}: allowed before, denied after, and no leak, escalation or required restriction covers it`);
  }
  const unchanged = cmp && !cmp.closed.length && !cmp.appears.length && !cmp.lost.length;
  out.push(
    `access: the program's policies against the CRM's own, capability by capability${unchanged ? " (in place already: this update changes no cell)" : ""}:`,
    ...CAPABILITIES.map((c) => `access: ${c.change}: ${c.capability}${c.reason ? ` (${c.reason})` : ""}`),
  );
  return out;
}

/** The README's table, as markdown rows under its header. */
export function applicationChangesTable(): string {
  const rows = CAPABILITIES.map((c) => `| ${c.capability} | ${c.change} | ${c.reason || "–"} |`);
  return ["| capability | after `up` (and after rollback) | why |", "|---|---|---|", ...rows].join("\n");
}
