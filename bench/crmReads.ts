/**
 * The CRM's reads as its users make them (issue 24, item 3; the seed's "query times <= baseline + 10%", the plan's
 * "performance impact analysis" of row level security). On a database built from the CRM's own SQL
 * (harness/realCrm.ts) with `orgs` organizations and at least `logsPerOrg` log rows each, pgbench runs each read as a
 * Supabase request (BEGIN, the request's role and JWT claims, the read, COMMIT), a member picked at random per
 * request (or the super_admin):
 *   credit row      a member's own credit row
 *   last 50 logs    its organization's last 50 log rows
 *   team profiles   its organization's profiles
 *   plan totals     a super_admin's totals per plan (organizations and credits left)
 * Each read is timed side by side with what it is compared with: two pgbench processes at once, half of the clients
 * each, on the same machine in the same seconds, so a load that comes and goes meets both alike (run one after the
 * other, the same pair of reads differed by up to 0.35x from one 5-second case to the next):
 *   no policy    the user's read and the same statement as service_role (the same rows, no policy in the way), in
 *                every phase: before `up` (the CRM's own policies), after `up` (the program's), after a rollback
 *                (the program's policies stay);
 *   before up    after `up` and after a rollback, the user's read and the same user's read on a copy of the
 *                database taken before `up` (the CRM's own policies), where the same rows were visible there.
 * Rounds repeat every pair; ratios are per round, medians reported with every round.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { collect, testStack, type TestStack } from "../harness/stack";
import { freshRealCrmDb } from "../harness/realCrm";
import type { Client } from "pg";
import { actAs, connect, rolledBack } from "../lib/db";
import { pgbench, pgbenchBin } from "./rpc";
import { createDatabase, dropDatabase } from "../operations/shared/pgserver";
import { pgServer } from "../harness/db";
import { median } from "../harness/consumerFleet";
import { quoteIdent } from "../lib/pgsql";
import { round } from "./common";
import { READER, READS, STATEMENT, statementWith, type Read } from "../harness/crmReads";

export { READS, type Read };

export const PHASES = ["before up", "after up", "after rollback"] as const;
export type Phase = (typeof PHASES)[number];

export interface ReadCase {
  phase: Phase;
  read: Read;
  as: "user" | "service_role";
  round: number;
  /** The pair the case ran in: with the same read with no policy, or with the same user's read before `up`. */
  pair: "no policy" | "before up";
  /** Which database: this phase's, or the copy taken before `up`. */
  db: "now" | "before up copy";
  tps: number;
  p50Ms: number;
  p99Ms: number;
  rowsPerRead: number;
}

/** One read in the server (EXPLAIN ANALYZE, no client, no round trip): medians over `runs` statements, each planned
 *  anew as a simple-protocol statement is, in its own request (BEGIN, the reader's role and claims, ROLLBACK). */
export interface InServerRead {
  phase: Phase;
  read: Read;
  as: "user" | "service_role";
  /** The program's policies as they are, or, for the super_admin's totals, the read policies on organization_credits
   *  replaced for the time of its statements by the cheapest per-row test there is, or by none at all. */
  policy: "as it is" | "organization_id IS NOT NULL" | "true";
  runs: number;
  planningMs: number;
  executionMs: number;
}

export interface CrmReadsResult {
  orgs: number;
  logRows: number;
  clients: number;
  /** Clients of each of a pair's two pgbench processes (half of `clients`). */
  clientsPerSide: number;
  durationSec: number;
  rounds: number;
  cases: ReadCase[];
  /** Per read: the median over rounds of user tps before up / user tps now, and of service_role tps / user tps, each
   *  from the two cases of one pair (time now / time then = tps then / tps now). */
  ratios: { phase: Phase; read: Read; vsBeforeUp: number | null; vsNoPolicy: number; rounds: { vsBeforeUp: number | null; vsNoPolicy: number }[] }[];
  /** Each read inside the server, in every phase (inServerReads). */
  inServer: InServerRead[];
}

/** In-server reading: rounds, and statements per case in each round. The cases take turns round by round, so a load
 *  that comes and goes for a second meets them alike. */
const IN_SERVER_ROUNDS = 10;
const IN_SERVER_RUNS = 25;

/** Each read in the server, as the user and as service_role: planning and execution time, medians over
 *  IN_SERVER_ROUNDS x IN_SERVER_RUNS statements, each in a request of its own (BEGIN, the reader's role and claims,
 *  the statement, ROLLBACK), as the pgbench clients send them. After `up` and after a rollback, the super_admin's
 *  totals also run with the read policies on organization_credits replaced by the cheapest per-row test
 *  (`organization_id IS NOT NULL`) and by `true`: what any row level security costs that read, and what none does.
 *  Each replacement is committed (no other session reads then: the pgbench cases come after) and the policies' own
 *  tests are put back at the end of the round, checked against pg_policies. */
async function inServerReads(url: string, phase: Phase, log: (s: string) => void): Promise<InServerRead[]> {
  const c = await connect(url);
  try {
    const [m] = (await c.query("SELECT uid, org FROM bench_reads.members WHERE i = 1")).rows;
    const [sa] = (await c.query("SELECT uid, org FROM bench_reads.super_admin")).rows;
    const readPolicies = (): Promise<{ policyname: string; qual: string }[]> =>
      c
        .query(
          `SELECT policyname, qual FROM pg_catalog.pg_policies
            WHERE schemaname = 'public' AND tablename = 'organization_credits' AND cmd IN ('SELECT', 'ALL') AND qual IS NOT NULL ORDER BY 1`,
        )
        .then((r) => r.rows);
    const original = await readPolicies();
    const setQuals = async (qual: (p: { policyname: string; qual: string }) => string) => {
      for (const p of original) await c.query(`ALTER POLICY ${quoteIdent(p.policyname)} ON public.organization_credits USING (${qual(p)})`);
    };
    type Case = Pick<InServerRead, "read" | "as" | "policy"> & { planning: number[]; execution: number[] };
    const cases: Case[] = [];
    for (const read of READS) for (const as of ["user", "service_role"] as const) cases.push({ read, as, policy: "as it is", planning: [], execution: [] });
    if (phase !== "before up")
      for (const policy of ["organization_id IS NOT NULL", "true"] as const)
        cases.push({ read: "plan totals", as: "user", policy, planning: [], execution: [] });
    const policies = [...new Set(cases.map((x) => x.policy))];
    /** fn with the read policies' tests replaced by `policy` (committed), then put back and checked, even when fn failed. */
    const withPolicy = async (policy: InServerRead["policy"], fn: () => Promise<void>) => {
      if (policy === "as it is") return fn();
      await setQuals(() => policy);
      const failed = await fn().then(
        () => undefined,
        (e: unknown) => e ?? new Error("failed"),
      );
      await setQuals((p) => p.qual);
      if (JSON.stringify(await readPolicies()) !== JSON.stringify(original))
        throw new Error("crm reads: the read policies on organization_credits were not put back as they were");
      if (failed) throw failed;
    };
    for (let round = 0; round < IN_SERVER_ROUNDS; round++) {
      for (const policy of policies) {
        await withPolicy(policy, async () => {
          for (const x of cases.filter((y) => y.policy === policy)) {
            const who = READER[x.read] === "super_admin" ? sa : m;
            const q = statementWith(x.read, who.org);
            for (let i = 0; i < IN_SERVER_RUNS; i++) {
              const r = await rolledBack(c, async () => {
                await actAs(c, x.as === "user" ? { sub: who.uid, role: "authenticated" } : { role: "service_role" });
                return c.query({ text: `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) ${q.text}`, values: q.values });
              });
              const j = r.rows[0]["QUERY PLAN"][0];
              x.planning.push(j["Planning Time"]);
              x.execution.push(j["Execution Time"]);
            }
          }
        });
      }
    }
    return cases.map(({ planning, execution, ...x }) => {
      const y = { phase, ...x, runs: planning.length, planningMs: round(median(planning), 3), executionMs: round(median(execution), 3) };
      log(
        `crm reads: ${phase}, in the server: ${y.read} as ${y.as}${y.policy === "as it is" ? "" : ` (read policy: ${y.policy})`}: planning ${y.planningMs} ms, execution ${y.executionMs} ms`,
      );
      return y;
    });
  } finally {
    await c.end();
  }
}

/** The same read as service_role in the same phase, with the program's policies: what `y` is compared with. */
export function serviceRoleRead(all: InServerRead[], y: Pick<InServerRead, "phase" | "read">): InServerRead | undefined {
  return all.find((z) => z.phase === y.phase && z.read === y.read && z.as === "service_role" && z.policy === "as it is");
}

function script(read: Read, as: "user" | "service_role", members: number): string {
  const who =
    READER[read] === "super_admin"
      ? "SELECT uid, org FROM bench_reads.super_admin \\gset"
      : `\\set i random(1, ${members})\nSELECT uid, org FROM bench_reads.members WHERE i = :i \\gset`;
  const role =
    as === "user"
      ? "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', json_build_object('sub', :uid::text, 'role', 'authenticated')::text, true);"
      : `SELECT set_config('role', 'service_role', true), set_config('request.jwt.claims', '{"role":"service_role"}', true);`;
  return `${who}\nBEGIN;\n${role}\n${STATEMENT[read]}\nEND;\n`;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

async function rowsPerRead(db: { client(): Promise<Client> }, read: Read, as: "user" | "service_role"): Promise<number> {
  const c = await db.client();
  try {
    const [m] = (
      await c.query(READER[read] === "super_admin" ? "SELECT uid, org FROM bench_reads.super_admin" : "SELECT uid, org FROM bench_reads.members WHERE i = 1")
    ).rows;
    return await rolledBack(c, async () => {
      await actAs(c, as === "user" ? { sub: m.uid, role: "authenticated" } : { role: "service_role" });
      const r = await c.query(statementWith(read, m.org));
      return read === "plan totals" ? r.rows.reduce((s: number, x: any) => s + Number(x.count), 0) : (r.rowCount ?? 0);
    });
  } finally {
    await c.end();
  }
}

export async function benchCrmReads(opts: {
  orgs: number;
  logsPerOrg: number;
  clients: number;
  durationSec: number;
  rounds: number;
  log: (s: string) => void;
}): Promise<CrmReadsResult> {
  const { log } = opts;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-reads-"));
  log(`crm reads: a database from the CRM's own SQL with ${opts.orgs} organizations`);
  const db = await freshRealCrmDb({ orgs: opts.orgs });
  let t: TestStack | undefined;
  try {
    const [{ n: have }] = await db.query(`SELECT count(*)::int AS n FROM public.credit_consumption_logs`);
    const want = opts.orgs * opts.logsPerOrg;
    if (have < want) {
      await db.query(
        `INSERT INTO public.credit_consumption_logs (organization_id, action_type, credits_consumed, credits_remaining, success, created_at)
         SELECT o.id, (SELECT action_type FROM public.credit_actions ORDER BY action_type LIMIT 1), 1, 0, true, now() - interval '1 minute' * g
           FROM public.organizations o CROSS JOIN generate_series(1, $1) g`,
        [opts.logsPerOrg],
      );
    }
    await db.query(
      `CREATE SCHEMA bench_reads;
       CREATE TABLE bench_reads.members AS
         SELECT row_number() OVER (ORDER BY p.id)::int AS i, p.id::text AS uid, p.organization_id::text AS org
           FROM public.profiles p JOIN public.organization_credits oc ON oc.organization_id = p.organization_id
          WHERE p.user_role <> 'super_admin';
       CREATE TABLE bench_reads.super_admin AS
         SELECT id::text AS uid, organization_id::text AS org FROM public.profiles WHERE user_role = 'super_admin' ORDER BY id LIMIT 1;
       GRANT USAGE ON SCHEMA bench_reads TO authenticated, service_role;
       GRANT SELECT ON ALL TABLES IN SCHEMA bench_reads TO authenticated, service_role;
       ANALYZE`,
    );
    const [{ members }] = await db.query(`SELECT count(*)::int AS members FROM bench_reads.members`);
    const [{ logs }] = await db.query(`SELECT count(*)::int AS logs FROM public.credit_consumption_logs`);
    const cases: ReadCase[] = [];
    // The database as it is before `up`, kept for the "before up" pairs (CREATE DATABASE ... TEMPLATE: no session open).
    const server = await pgServer();
    const beforeName = `${db.name}_before`;
    const beforeUrl = await createDatabase(server, beforeName, { template: db.name });
    const before = { client: () => connect(beforeUrl) };
    const half = Math.max(1, Math.floor(opts.clients / 2));
    const one = (url: string, phase: Phase, read: Read, as: "user" | "service_role", tag: string) =>
      pgbench(
        pgbenchBin(),
        url,
        `${phase.replace(/ /g, "_")}_${read.replace(/ /g, "_")}_${as}_${tag}`,
        script(read, as, members),
        half,
        opts.durationSec,
        dir,
        as === "user" ? "authenticated" : "service_role",
      );
    const inServer: InServerRead[] = [];
    const measure = async (phase: Phase) => {
      inServer.push(...(await inServerReads(db.url, phase, log)));
      // The rows each read returns in this phase (the data does not change while the phase is timed).
      const rowsOf = new Map<Read, { user: number; service_role: number; before: number }>();
      for (const read of READS)
        rowsOf.set(read, {
          user: await rowsPerRead(db, read, "user"),
          service_role: await rowsPerRead(db, read, "service_role"),
          before: await rowsPerRead(before, read, "user"),
        });
      for (let round = 1; round <= opts.rounds; round++) {
        for (const read of READS) {
          const rows = rowsOf.get(read)!;
          const record = (pair: ReadCase["pair"], which: ReadCase["db"], as: ReadCase["as"], r: Awaited<ReturnType<typeof one>>, n: number) => {
            cases.push({ phase, read, as, round, pair, db: which, tps: r.tps, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99, rowsPerRead: n });
            log(`crm reads: ${phase}, round ${round}: ${read} as ${as} (${pair} pair, ${which}): ${r.tps} tps, p50 ${r.latencyMs.p50} ms (${n} rows)`);
          };
          const [u, sr] = await Promise.all([one(db.url, phase, read, "user", "a"), one(db.url, phase, read, "service_role", "b")]);
          record("no policy", "now", "user", u, rows.user);
          record("no policy", "now", "service_role", sr, rows.service_role);
          if (phase === "before up") continue;
          const [u2, b] = await Promise.all([one(db.url, phase, read, "user", "c"), one(beforeUrl, phase, read, "user", "d")]);
          record("before up", "now", "user", u2, rows.user);
          record("before up", "before up copy", "user", b, rows.before);
        }
      }
    };
    try {
      await measure("before up");
      t = await testStack(db.url, { creditModel: "multi" });
      log("crm reads: pulumi up (multi)");
      await t.stack.up({ onEvent: collect(t) });
      await db.query("VACUUM ANALYZE");
      await measure("after up");
      log("crm reads: rollback (guardian:creditModel unified, pulumi up)");
      await t.setConfig({ creditModel: "unified" });
      await t.stack.up({ onEvent: collect(t) });
      await db.query("VACUUM ANALYZE");
      await measure("after rollback");
    } finally {
      await dropDatabase(server, beforeName).catch(() => undefined);
    }

    const at = (phase: Phase, read: Read, pair: ReadCase["pair"], which: ReadCase["db"], as: ReadCase["as"], round: number) =>
      cases.find((c) => c.phase === phase && c.read === read && c.pair === pair && c.db === which && c.as === as && c.round === round)!;
    const ratios: CrmReadsResult["ratios"] = [];
    for (const phase of PHASES) {
      for (const read of READS) {
        const rounds = Array.from({ length: opts.rounds }, (_, k) => {
          const user = at(phase, read, "no policy", "now", "user", k + 1);
          const then = phase === "before up" ? undefined : at(phase, read, "before up", "before up copy", "user", k + 1);
          const now = phase === "before up" ? undefined : at(phase, read, "before up", "now", "user", k + 1);
          return {
            // time now / time before = tps before / tps now (where the same rows were visible before)
            vsBeforeUp: !then || !now || then.rowsPerRead !== now.rowsPerRead ? null : r2(then.tps / now.tps),
            vsNoPolicy: r2(at(phase, read, "no policy", "now", "service_role", k + 1).tps / user.tps),
          };
        });
        const vb = rounds.map((x) => x.vsBeforeUp).filter((x): x is number => x !== null);
        ratios.push({ phase, read, vsBeforeUp: vb.length ? r2(median(vb)) : null, vsNoPolicy: r2(median(rounds.map((x) => x.vsNoPolicy))), rounds });
      }
    }
    return {
      orgs: opts.orgs,
      logRows: logs,
      clients: opts.clients,
      clientsPerSide: half,
      durationSec: opts.durationSec,
      rounds: opts.rounds,
      cases,
      ratios,
      inServer,
    };
  } finally {
    if (t) {
      t.destroyWorkspace();
      fs.rmSync(t.stateDir, { recursive: true, force: true });
    }
    await db.drop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
