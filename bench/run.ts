/**
 * npm run bench: what the migration costs and what the applications see while it runs, on this machine, with the
 * baselines measured in the same run.
 *
 *   npm run bench                                   rpc + every size (10,000, 100,000, 1,000,000 orgs)
 *   npm run bench -- --sizes 10000,100000           chosen sizes
 *   npm run bench -- --quick                        CI size: 10,000 orgs, 2-second pgbench runs (unless --sizes, --rpc-seconds)
 *   npm run bench -- --zero-downtime [--sizes ...]  the zero-downtime proof at scale (harness/consumerFleet.ts)
 *   npm run bench -- --rpc-only [--rpc-rounds N]    only the consume_credits_rpc pgbench cases (bench/rpc.ts), N rounds
 *   options: --out DIR (default bench/results), --consumers N (default 4), --rpc-seconds N, --rpc-rounds N, --json,
 *            --rpc-caller supabase|direct (how each pgbench call arrives, bench/rpc.ts; default supabase), --rpc-orgs N
 *   (npm run bench -- --help: every option; operations/shared/cli.ts)
 *
 * Writes bench/results/<YYYY-MM-DD>[.quick|.zero-downtime|.rpc][.direct].json and .md (the Markdown is the summary to
 * quote; .direct when the pgbench calls were sent without the Supabase caller's transaction).
 *
 * Per size, on a fresh database seeded with operations/seed (seed 1) and analyzed, through the real engine
 * (harness/stack.ts: the CLI, a file backend in a temp dir):
 *   preview        `pulumi preview` of the migration (what an operator runs first), and again once migrated (no change)
 *   up             `pulumi up` (creditModel multi) while consumers call consume_credits_rpc back to back on random
 *                  orgs; the backfill's own time and orgs/s come from its resource's outputs, its window from the
 *                  journal's backfill_batch rows
 *   consumers      every call's latency: idle before the up (v1), during the whole up, during the backfill window;
 *                  and the longest lock wait any consumer was seen in (pg_locks.waitstart, sampled every 20 ms),
 *                  with the application that held the lock
 *   rollback       `pulumi up` with creditModel unified (consumers still calling), and the provider's own time
 * Growth: every time at size N divided by the same time at the smallest size of the run.
 *
 * The files: bench/run.ts (this: arguments and the run), common.ts (arguments, logging, formats, SQL), samplers.ts
 * (lock waits, loop lag, load), migrationSize.ts (one size), zeroDowntime.ts, rpc.ts, crmReads.ts, watchReading.ts,
 * report.ts (machine, targets, Markdown); harness/ holds what they share with the tests.
 *
 * Targets (issue 6): backfill of 1M orgs under 60 s while consumers run; preview nearly flat in org count (here:
 * at most 1.5x the smallest size's); rollback of 100k orgs under 30 s (the `up`'s wall time); no consumer call
 * slower than 100 ms during the backfill.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  command,
  flag,
  integer,
  jsonFlag,
  list,
  oneOf,
  option,
  outputPath,
  positiveInteger,
  printJson,
  runCommandLine,
  type Values,
} from "../operations/shared/cli";
import { findPgServer } from "../operations/shared/pgserver";
import { BENCH_CALLERS, benchRpc, type BenchCaller } from "./rpc";
import { benchWatchReading, type WatchReadingResult } from "./watchReading";
import { benchCrmReads, PHASES, type CrmReadsResult, serviceRoleRead } from "./crmReads";
import { type Args, fmt, log, round } from "./common";
import { benchSize, LOG_INDEX, type SizeResult } from "./migrationSize";
import { zeroDowntimeSize, type ZeroDowntimeResult } from "./zeroDowntime";
import { machine, markdown, targets, type Target } from "./report";

const DEFAULT_SIZES = [10_000, 100_000, 1_000_000];

export const COMMAND = command({
  name: "bench",
  summary: [
    "What the migration costs and what the applications see while it runs, on this machine: pgbench of the RPC, then",
    "per size a fresh seeded database, pulumi preview / up (multi) / up (unified) with consumers calling throughout.",
    "Writes <out>/<YYYY-MM-DD>[.quick|.zero-downtime|.rpc].json and .md; prints the Markdown (or, with --json, the result).",
  ],
  options: {
    sizes: option(list(integer({ min: 16 }), "comma-separated integers of at least 16 (organizations per size)"), {
      valueName: "N,N...",
      description: "organization counts, one fresh database each",
      defaultText: "10000,100000,1000000; with --quick 10000",
    }),
    quick: flag("the CI size: 10,000 orgs (unless --sizes), 2-second pgbench runs (unless --rpc-seconds)"),
    zeroDowntime: flag("the zero-downtime proof at scale instead (harness/consumerFleet.ts): up multi, up unified, up multi"),
    rpcOnly: flag("only the consume_credits_rpc pgbench cases (bench/rpc.ts), no migration sizes"),
    crmReads: flag(
      "only the CRM's reads as its users make them (bench/crmReads.ts), before up, after up and after a rollback: --sizes orgs (default 2,000), 100 log rows each, 4 clients, --rpc-seconds and --rpc-rounds per case",
    ),
    watchReading: flag(
      "only one `npm run watch` reading's time on a large database (bench/watchReading.ts): --sizes orgs (default 1,000,000), 10 log rows each",
    ),
    rpcRounds: option(positiveInteger(), {
      valueName: "N",
      default: 1,
      description: "run every pgbench case N times, each round side by side; ratios per round, with their spread",
    }),
    out: option(outputPath({ directoryOk: true, what: "a directory path" }), {
      valueName: "DIR",
      description: "where the results go",
      defaultText: "bench/results",
    }),
    consumers: option(positiveInteger(), { valueName: "N", description: "concurrent consumers calling consume_credits_rpc", default: 4 }),
    rpcSeconds: option(positiveInteger("a positive integer (pgbench -T)"), { valueName: "S", description: "pgbench duration per case", default: 5 }),
    rpcCaller: option(oneOf(...BENCH_CALLERS), {
      valueName: "C",
      default: "supabase" as BenchCaller,
      description: "how each pgbench call arrives: supabase (a PostgREST request's transaction and settings) or direct (the statement alone)",
    }),
    rpcOrgs: option(positiveInteger(), { valueName: "N", description: "organizations the pgbench calls pick from", default: 3371 }),
    json: jsonFlag("the result (the document written to <out>/...json)"),
  },
  conflicts: [
    { options: ["zeroDowntime", "rpcSeconds"], reason: "the zero-downtime run has no pgbench cases" },
    { options: ["zeroDowntime", "rpcOnly"], reason: "the zero-downtime run has no pgbench cases" },
    { options: ["zeroDowntime", "rpcRounds"], reason: "the zero-downtime run has no pgbench cases" },
    { options: ["zeroDowntime", "rpcCaller"], reason: "the zero-downtime run has no pgbench cases" },
    { options: ["zeroDowntime", "rpcOrgs"], reason: "the zero-downtime run has no pgbench cases" },
    { options: ["rpcOnly", "sizes"], reason: "--rpc-only runs no migration size" },
    { options: ["watchReading", "zeroDowntime"], reason: "--watch-reading runs only the watch's reading" },
    { options: ["crmReads", "zeroDowntime"], reason: "--crm-reads runs only the CRM's reads" },
    { options: ["crmReads", "rpcOnly"], reason: "--crm-reads runs only the CRM's reads" },
    { options: ["crmReads", "watchReading"], reason: "--crm-reads and --watch-reading are runs of their own" },
    { options: ["watchReading", "rpcOnly"], reason: "--watch-reading runs only the watch's reading" },
    { options: ["watchReading", "rpcRounds"], reason: "--watch-reading runs no pgbench case" },
    { options: ["watchReading", "rpcSeconds"], reason: "--watch-reading runs no pgbench case" },
  ],
  check: (v, given) => {
    if (v.out !== undefined && fs.existsSync(v.out) && !fs.statSync(v.out).isDirectory())
      return `--out: expected a directory path, got ${JSON.stringify(v.out)} (a file)`;
    if (v.quick && v.zeroDowntime && given.has("sizes"))
      return "--quick does nothing with --zero-downtime and --sizes (it only picks the size): give one of them";
    return undefined;
  },
  exitCodes: ["0 done", "2 bad arguments", "1 a zero-downtime size failed, or the bench itself failed"],
});

function toArgs(v: Values<typeof COMMAND.options>, given: ReadonlySet<string>): Args {
  const quickSizes = v.quick && !v.sizes;
  return {
    sizes: v.sizes ?? (quickSizes ? [10_000] : v.watchReading ? [1_000_000] : v.crmReads ? [2_000] : DEFAULT_SIZES),
    quick: v.quick,
    zeroDowntime: v.zeroDowntime,
    rpcOnly: v.rpcOnly,
    crmReads: v.crmReads,
    watchReading: v.watchReading,
    rpcRounds: v.rpcRounds,
    out: path.resolve(v.out ?? path.join(__dirname, "results")),
    consumers: v.consumers,
    rpcSeconds: v.quick && !given.has("rpcSeconds") ? 2 : v.rpcSeconds,
    rpcCaller: v.rpcCaller,
    rpcOrgs: v.rpcOrgs,
    json: v.json,
  };
}

// ---------------------------------------------------------------------------------------------------------------

async function main(argv: string[], a: Args) {
  const server = await findPgServer(log);
  const result: any = {
    date: new Date().toISOString().slice(0, 10),
    at: new Date().toISOString(),
    mode: a.crmReads ? "crm-reads" : a.watchReading ? "watch-reading" : a.zeroDowntime ? "zero-downtime" : a.rpcOnly ? "rpc" : a.quick ? "quick" : "full",
    argv,
    machine: await machine(server),
    notes: [] as string[],
  };
  log(
    `bench: ${result.mode}, ${a.rpcOnly ? `${a.rpcRounds} round(s) of the rpc cases` : `sizes ${a.sizes.map(fmt).join(", ")}, ${a.consumers} consumers`}; ${result.machine.cores} cores, ${result.machine.postgres}`,
  );
  if (a.crmReads) {
    result.crmReads = [];
    for (const n of a.sizes)
      result.crmReads.push(await benchCrmReads({ orgs: n, logsPerOrg: 100, clients: 4, durationSec: a.rpcSeconds, rounds: a.rpcRounds, log }));
    result.targets = (result.crmReads as CrmReadsResult[]).flatMap((r) =>
      r.ratios
        .filter((x) => x.phase !== "before up")
        .flatMap((x) => {
          const each = (k: "vsBeforeUp" | "vsNoPolicy") => (x.rounds.length > 1 ? ` (rounds: ${x.rounds.map((y) => `x${y[k]}`).join(", ")})` : "");
          const out: Target[] = [
            {
              target: `${x.read}, ${x.phase}: time <= 1.1x the same read with no policy in the way (service_role, same rows, side by side; ${fmt(r.orgs)} orgs, ${r.clients} clients)`,
              measured: `x${x.vsNoPolicy}${each("vsNoPolicy")}`,
              met: x.vsNoPolicy <= 1.1,
            },
          ];
          if (x.vsBeforeUp !== null)
            out.push({
              target: `${x.read}, ${x.phase}: time <= 1.1x before up (the CRM's own policies on a copy taken before up, same rows, side by side)`,
              measured: `x${x.vsBeforeUp}${each("vsBeforeUp")}`,
              met: x.vsBeforeUp <= 1.1,
            });
          return out;
        }),
    );
    // Inside the server, what the super_admin's totals cost with the program's read policy, with the cheapest per-row
    // test there is, and with none, each against the same read as service_role: where the floor of any policy lies.
    for (const r of result.crmReads as CrmReadsResult[])
      for (const phase of PHASES.filter((p) => p !== "before up")) {
        const sr = serviceRoleRead(r.inServer, { phase, read: "plan totals" })?.executionMs;
        const x = (policy: string) => {
          const u = r.inServer.find((y) => y.phase === phase && y.read === "plan totals" && y.as === "user" && y.policy === policy)?.executionMs;
          return u && sr ? `x${(u / sr).toFixed(2)}` : "not measured";
        };
        result.targets.push({
          target: `(reading, not a target) plan totals, ${phase}, inside the server: execution time against service_role's with the program's read policy / the cheapest per-row test (organization_id IS NOT NULL) / no test (true)`,
          measured: `${x("as it is")} / ${x("organization_id IS NOT NULL")} / ${x("true")}`,
          met: null,
        });
      }
  } else if (a.watchReading) {
    result.watchReading = [];
    for (const n of a.sizes) result.watchReading.push(await benchWatchReading(server, { orgs: n, logsPerOrg: 10, log }));
    result.targets = result.watchReading.map((w: WatchReadingResult) => {
      const scans = Object.entries(w.seqScans).filter(([, t]) => t.length);
      return {
        target: `one watch reading on ${fmt(w.orgs)} orgs and ${fmt(w.logRows)} log rows reads index ranges, no table whole`,
        measured: `median ${w.medianMs} ms, max ${w.maxMs} ms over ${w.readings.length} readings; ${scans.length ? scans.map(([q, t]) => `${q}: Seq Scan of ${t.join(", ")}`).join("; ") : "no Seq Scan in its queries' plans"}`,
        met: scans.length === 0,
      };
    });
  } else if (a.zeroDowntime) {
    result.zeroDowntime = [];
    for (const n of a.sizes) result.zeroDowntime.push(await zeroDowntimeSize(server, n, a));
  } else {
    log(`rpc: pgbench, ${a.rpcSeconds} s per case, ${a.rpcRounds} round(s), ${fmt(a.rpcOrgs)} orgs, ${a.rpcCaller} caller`);
    const rpc = await benchRpc(server.adminUrl, {
      durationSec: a.rpcSeconds,
      clients: [1, 8, 32],
      orgs: a.rpcOrgs,
      caller: a.rpcCaller,
      rounds: a.rpcRounds,
      log,
    });
    result.rpc = rpc;
    result.rpcRatios = rpc.ratios.map((x) => {
      const at = (c: string) => rpc.cases.find((y) => y.case === c && y.clients === x.clients && y.round === x.round)!;
      const [v2, b] = [at("v2"), at(x.versus)];
      return {
        clients: x.clients,
        round: x.round,
        versus: x.versus,
        p50: round(v2.latencyMs.p50 / b.latencyMs.p50),
        p95: round(v2.latencyMs.p95 / b.latencyMs.p95),
        p99: round(v2.latencyMs.p99 / b.latencyMs.p99),
        tps: round(v2.tps / b.tps),
      };
    });
    result.sizes = [];
    if (!a.rpcOnly) for (const n of a.sizes) result.sizes.push(await benchSize(server, n, a));
    result.targets = targets(result.sizes, rpc);
    // What the run itself says about a slow call during the backfill: a lock wait (and whose lock), a wait inside the
    // server (LWLock:WALWrite = WAL flushes, IO:* = disk, CPU = none), or the bench's own event loop.
    for (const z of result.sizes as SizeResult[]) {
      const c = z.consumers.duringBackfill;
      if (c.max > 100) {
        const w = z.lockWaits.duringBackfill;
        result.notes.push(
          `${fmt(z.orgs)} orgs: the slowest consumer call during the backfill took ${c.max} ms (p99 ${c.p99} ms). ` +
            `Longest lock wait of a consumer then: ${w.maxMs} ms (held by ${w.blocker ?? "nobody"}); longest call the server saw running: ` +
            `${w.longestRunningMs} ms, waiting on ${w.longestRunningWait ?? "?"}; the bench's event loop stalled at most ${z.clientLagMs.duringBackfill} ms.`,
        );
      }
    }
  }

  const repaired = [...(result.sizes ?? []), ...(result.zeroDowntime ?? [])].filter((x: any) => x.repairs?.length);
  if (repaired.length) {
    result.notes.push(
      `DEFECT: at ${repaired.map((x: any) => fmt(x.orgs)).join(", ")} orgs the first \`pulumi up\` failed: ${LOG_INDEX} was left INVALID ` +
        "and the provider did not rebuild it (providers/sqlObject.ts drops an INVALID index before building; test/interrupted-index.test.ts). " +
        "The bench dropped it and ran `up` again; its figures are those of the run that completed.",
    );
  }
  result.machine.loadAverageAtEnd = os.loadavg().map((x) => round(x));
  result.notes.push(
    `Load average (1 min) ${result.machine.loadAverageAtStart[0]} at the start, ${result.machine.loadAverageAtEnd[0]} at the end: ` +
      "the machine is shared, and other work on it takes CPU and disk from both the migration and the consumers. Compare the rows of one run.",
  );

  fs.mkdirSync(a.out, { recursive: true });
  const direct = !a.zeroDowntime && a.rpcCaller === "direct" ? ".direct" : "";
  const base = path.join(a.out, `${result.date}${result.mode === "full" ? "" : `.${result.mode}`}${direct}`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, markdown(result));
  log(`bench: wrote ${path.relative(process.cwd(), base)}.json and .md`);
  if (a.json) printJson(result);
  else process.stdout.write(markdown(result));
  const failed = (result.zeroDowntime ?? []).some((z: ZeroDowntimeResult) => !z.passed);
  process.exitCode = failed ? 1 : 0;
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) process.exit(cli.exitCode);
  main(argv, toArgs(cli.values, cli.given)).catch((e) => {
    log(`bench: ${e?.stack ?? e}`);
    process.exit(1);
  });
}
