/**
 * Verification: facts computed from the database after the other steps, and invariants that fail the update.
 *
 *   create  runs the verification SQL (a pg_temp function: nothing persists); calls the installed consume_credits_rpc
 *           (and consume_credits_batch) for real, as service_role and as a member, in a transaction it rolls back
 *           (sql/verification/trial_calls.sql): a call that errors is a violation; and tests tenant isolation as real
 *           users sampled from profiles (a member, a user without a profile, a super_admin) and as anon, on every
 *           guarded table: a row of another organization seen by anyone but a super_admin is a violation. Journals
 *           the outcome, and fails with a message naming the organizations or the table when an invariant is
 *           violated. The facts (with the isolation matrix) become outputs.
 *   read    keeps the recorded facts (verification is a point-in-time statement, re-made on every change upstream), and
 *           re-checks what must hold at any time: the trial calls and tenant isolation. When either fails now, the
 *           state records it (liveCheck), so `pulumi up --refresh` re-verifies and fails instead of passing.
 *   diff    an update when what it verifies changed: the SQL, the model, or any upstream fingerprint.
 *   update  as create.
 *   delete  nothing to remove.
 */
import type * as pulumi from "@pulumi/pulumi";
import { isolationMatrix } from "../lib/isolation";
import { accessMismatches } from "../lib/access";
import { cellName, probeAccess } from "../lib/accessProbe";
import {
  connectionChanged,
  connectedResource,
  recorded,
  type RecordedBy,
  diffOf,
  errorMessage,
  journal,
  type Provider,
  rolledBack,
  type ResourceArgs,
  transaction,
  withConnection,
} from "./kernel";
import type { Connection } from "./kernel";
import type { CreditModel } from "../lib/config";

export interface VerificationInputs extends Connection {
  /** The credit model verified (a CreditModel where the program declares it: VerificationArgs); it names the
   *  resource, the journal entry and the messages. */
  model: string;
  sql: string;
  sqlSha256: string;
  /** sql/verification/trial_calls.sql: the installed functions called for real, rolled back. */
  trialCallsSql: string;
  /** The column of public.profiles holding super_admin (the database's shape). */
  profileRoleColumn: string;
  /** The guarded tables and their organization column (null: shared by every tenant). */
  isolationTables: { table: string; orgColumn: string | null }[];
  /** Fingerprints of what this verifies (functions, backfill run, policies...): a change re-runs verification. */
  upstream: Record<string, string | number | boolean | undefined>;
}

/** What the verification records beyond its inputs: the resource's outputs, declared once. */
export const VERIFICATION_OUTPUTS = {
  facts: recorded<Record<string, unknown>>(),
  violations: recorded<string[]>(),
  /** "ok", or what a refresh found failing now ("failed: ..."). */
  liveCheck: recorded<string>(),
  verifiedAt: recorded<string>(),
};

export type VerificationOutputs = VerificationInputs & RecordedBy<typeof VERIFICATION_OUTPUTS>;

export type VerificationArgs = Omit<ResourceArgs<VerificationInputs>, "model" | "upstream"> & {
  model: pulumi.Input<CreditModel>;
  upstream: pulumi.Input<Record<string, pulumi.Input<string | number | boolean | undefined>>>;
};

const APP = "verification";

/** What sql/verification/<model>.sql's pg_temp.guardian_verify() answers. */
interface Verdict {
  violations?: string[];
  facts?: Record<string, unknown>;
}

interface SecurityDefiner {
  fn: string;
  schema: string;
  name: string;
  nargs: number;
  search_path: string | null;
}

async function verify(inputs: VerificationInputs): Promise<VerificationOutputs> {
  return withConnection(inputs, APP, async (c) => {
    const r = await transaction(c, { isolation: "REPEATABLE READ" }, async () => {
      await c.query(inputs.sql);
      return (await c.query<{ v: Verdict }>("SELECT pg_temp.guardian_verify() AS v")).rows[0].v;
    });
    const violations: string[] = r.violations ?? [];
    const facts: Record<string, unknown> = r.facts ?? {};

    // The installed functions, called as the application and a member call them (rolled back).
    await rolledBack(c, async () => {
      try {
        await c.query(inputs.trialCallsSql);
        facts.trialCalls = "every call answered";
      } catch (e) {
        facts.trialCalls = `failed: ${errorMessage(e)}`;
        violations.push(`consume_credits_rpc: ${errorMessage(e)}`);
      }
    });

    // Every SECURITY DEFINER function in the guarded schemas pins a search_path ending with pg_temp (an empty path
    // still searches the caller's temporary schema first). The program's own: a violation; others: listed, warned.
    const defs = (
      await c.query<SecurityDefiner>(
        `SELECT p.oid::regprocedure::text AS fn, n.nspname AS schema, p.proname AS name, p.pronargs AS nargs,
              (SELECT substr(x, length('search_path=') + 1) FROM unnest(p.proconfig) x WHERE x LIKE 'search_path=%') AS search_path
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef AND n.nspname IN ('public', 'guardian', 'guardian_rls') ORDER BY 1`,
      )
    ).rows;
    const pinned = (sp: string | null) => sp !== null && /(^|,)\s*"?pg_temp"?\s*$/.test(sp);
    const ours = (d: SecurityDefiner) => d.schema !== "public" || d.name === "consume_credits_batch" || (d.name === "consume_credits_rpc" && d.nargs === 4);
    const unpinned = defs.filter((d) => !pinned(d.search_path));
    for (const d of unpinned.filter(ours))
      violations.push(`security definer: ${d.fn} has search_path ${d.search_path === null ? "unset" : `"${d.search_path}"`}, not ending with pg_temp`);
    facts.securityDefinerFunctions = defs.length;
    const warnings = unpinned
      .filter((d) => !ours(d))
      .map(
        (d) =>
          `${d.fn} (not the program's) is SECURITY DEFINER with search_path ${d.search_path === null ? "unset" : `"${d.search_path}"`}: a caller's temporary objects can shadow what it reads`,
      );
    facts.securityDefinerWarnings = warnings;
    for (const w of warnings) console.log(`verification (${inputs.model}): warning: ${w}`);

    // TRIGGER and TRUNCATE are the owner's alone on the tables the SECURITY DEFINER functions read or write: a
    // trigger fires inside them as their owner; TRUNCATE bypasses row level security and the append-only audit.
    const ownerOnly = (
      await c.query<{ t: string; who: string; what: string }>(
        `SELECT c.oid::regclass::text AS t, coalesce(r.rolname, 'PUBLIC') AS who, a.privilege_type AS what
           FROM pg_catalog.pg_class c
          CROSS JOIN LATERAL aclexplode(c.relacl) a
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
          WHERE c.oid IN (SELECT to_regclass(x) FROM unnest(ARRAY['public.organizations', 'public.profiles', 'public.organization_credits',
                                                                  'public.credit_actions', 'public.credit_consumption_logs']) x)
            AND a.privilege_type IN ('TRIGGER', 'TRUNCATE') AND a.grantee <> c.relowner
            AND NOT coalesce((SELECT rolsuper FROM pg_catalog.pg_roles s WHERE s.oid = a.grantee), false)
          ORDER BY 1, 2, 3`,
      )
    ).rows;
    for (const x of ownerOnly) violations.push(`owner-only privileges: ${x.who} holds ${x.what} on ${x.t} (only the owner may)`);
    facts.ownerOnlyTriggerTruncate = ownerOnly.length === 0;

    // Since when v2 keeps the unified columns current, and how many organizations the up that started it brought
    // current (a database multi from an earlier version; sql/functions/02_bring_unified_current.sql).
    const hasMarker = (await c.query(`SELECT to_regclass('guardian.unified_columns_current') IS NOT NULL AS t`)).rows[0].t;
    const kept = hasMarker
      ? (await c.query(`SELECT since, backup_id, orgs_brought_current::bigint AS n FROM guardian.unified_columns_current`)).rows[0]
      : undefined;
    facts.unifiedColumnsCurrent = kept ? { since: kept.since, fromBackup: kept.backup_id, orgsBroughtCurrent: Number(kept.n) } : null;

    // The access matrix, acting as the application's roles (read-only): each cell as the program's grants, policies
    // and guard trigger decide it (lib/access.ts programAccess), after up and after a rollback alike (the policies stay).
    const access = await probeAccess(c, inputs.profileRoleColumn);
    const accessMismatch = accessMismatches(access);
    violations.push(...accessMismatch);
    facts.accessMatrix = {
      cells: access.cells.length,
      mismatches: accessMismatch.length,
      allowed: Object.fromEntries(access.roles.map((r) => [r, access.cells.filter((x) => x.role === r && x.allowed).map(cellName)])),
    };

    // Tenant isolation, as real users (and anon), on every guarded table.
    const iso = await isolationMatrix(c, inputs.profileRoleColumn, inputs.isolationTables);
    facts.isolation = iso.matrix;
    violations.push(...iso.violations);
    await journal(c, { step: "verification", objectName: inputs.model, details: { violations: Number(violations.length) } }, { optional: true });
    for (const [k, v] of Object.entries(facts)) console.log(`verification (${inputs.model}): ${k} = ${JSON.stringify(v)}`);
    if (violations.length) {
      throw new Error(`verification of the ${inputs.model} model FAILED (${violations.length} invariant(s) violated):\n  - ${violations.join("\n  - ")}`);
    }
    return { ...inputs, facts, violations, liveCheck: "ok", verifiedAt: new Date().toISOString() };
  });
}

export const verificationProvider: Provider<VerificationInputs, VerificationOutputs> = {
  async diff(_id, olds, news) {
    const changed: string[] = [];
    if (olds.model !== news.model) changed.push("model");
    if (olds.sqlSha256 !== news.sqlSha256 || olds.trialCallsSql !== news.trialCallsSql) changed.push("sql");
    if (JSON.stringify(olds.upstream ?? {}) !== JSON.stringify(news.upstream ?? {})) changed.push("upstream");
    if (connectionChanged(olds, news)) changed.push("databaseUrl"); // re-verified with the new credential (or TLS settings)
    if (olds.liveCheck && olds.liveCheck !== "ok") changed.push("liveCheck"); // a refresh found calls or isolation failing
    return diffOf(changed);
  },
  async create(inputs) {
    return { id: `verification:${inputs.model}`, outs: await verify(inputs) };
  },
  async update(_id, _olds, news) {
    return { outs: await verify(news) };
  },
  async read(id, props) {
    const trialCallsSql = props?.trialCallsSql;
    if (!trialCallsSql) return { id, props };
    let liveCheck = "ok";
    try {
      await withConnection(props, APP, async (c) => {
        await rolledBack(c, () => c.query(trialCallsSql));
        const iso = await isolationMatrix(c, props.profileRoleColumn ?? "", props.isolationTables ?? []);
        if (iso.violations.length) liveCheck = `failed: ${iso.violations.join("; ")}`;
      });
    } catch (e) {
      liveCheck = `failed: ${errorMessage(e)}`;
    }
    return { id, props: { ...props, liveCheck } };
  },
  async delete() {},
};

/** Type token: pulumi-nodejs:dynamic/guardian:Verification. */
export const VerificationRun = connectedResource<VerificationInputs, typeof VERIFICATION_OUTPUTS, VerificationArgs>(
  verificationProvider,
  "Verification",
  VERIFICATION_OUTPUTS,
);
export type VerificationRun = InstanceType<typeof VerificationRun>;
