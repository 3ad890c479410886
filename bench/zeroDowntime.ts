/** `npm run bench -- --zero-downtime`: the zero-downtime proof at scale (harness/consumerFleet.ts). */
import * as crypto from "crypto";
import * as fs from "fs";
import { dropDatabase, type PgServer } from "../operations/shared/pgserver";
import { collect, testStack, type TestStack } from "../harness/stack";
import { checkLedger, checkMulti, checkUnifiedAfterRollback, ConsumerFleet, type FleetReport, fleetOrgs, maxLogId, phaseStats } from "../harness/consumerFleet";
import { type Args, fmt, log, secs } from "./common";
import { seededDatabase, upWithRepair } from "./migrationSize";

// ---------------------------------------------------------------------------------------------------------------
// Zero downtime at scale

/** One size's proof: the fleet's counts (harness/consumerFleet.ts FleetReport), its ledger and invariants. */
export interface ZeroDowntimeResult
  extends Pick<FleetReport, "calls" | "twoArg" | "fourArg" | "successes" | "refusals" | "replays" | "fourArgRefusedWithoutV2"> {
  orgs: number;
  consumers: number;
  replayMismatches: number;
  failures: number;
  failureSamples: string[];
  ledger: { mismatches: number; samples: string[]; logSuccesses: number; clientSuccesses: number; logRefusals: number; clientRefusals: number };
  invariants: Record<string, { orgs: number; violations: number; samples: string[] }>;
  phases: Record<string, ReturnType<typeof phaseStats> & { seconds: number }>;
  repairs: string[];
  passed: boolean;
}

export async function zeroDowntimeSize(server: PgServer, orgs: number, a: Args): Promise<ZeroDowntimeResult> {
  const db = await seededDatabase(server, orgs);
  let t: TestStack | undefined;
  let fleet: ConsumerFleet | undefined;
  try {
    t = await testStack(db.url, { creditModel: "multi" });
    const ids = await fleetOrgs(db.url);
    const since = await maxLogId(db.url);
    fleet = new ConsumerFleet({ url: db.url, orgs: ids, consumers: a.consumers, tag: crypto.randomBytes(3).toString("hex") });
    const windows: Record<string, { from: number; to: number }> = {};
    const phase = async (name: string, fn: () => Promise<unknown>) => {
      const from = Date.now();
      log(`zero-downtime ${fmt(orgs)}: ${name}`);
      await fn();
      windows[name] = { from, to: Date.now() };
    };
    const invariants: ZeroDowntimeResult["invariants"] = {};
    const check = async (name: string, fn: () => Promise<{ orgs: number; violations: string[] }>) => {
      await fleet!.pause();
      const r = await fn();
      invariants[name] = { orgs: r.orgs, violations: r.violations.length, samples: r.violations.slice(0, 5) };
      fleet!.resume();
    };
    await fleet.start();
    await phase("before (v1)", () => new Promise((r) => setTimeout(r, 3000)));
    let migrate: any;
    const repairs: string[] = [];
    await phase("up multi", async () => (migrate = await upWithRepair(t!, db.url, collect(t!), repairs)));
    await check("multi after the migration", () => checkMulti(db.url));
    const boundary = await maxLogId(db.url);
    await t.setConfig({ creditModel: "unified" });
    await phase("up unified (rollback)", () => t!.stack.up({ onEvent: collect(t!) }));
    await phase("after rollback (v1)", () => new Promise((r) => setTimeout(r, 3000)));
    await check("unified after the rollback", () => checkUnifiedAfterRollback(db.url, migrate.outputs.backupId.value, boundary));
    await t.setConfig({ creditModel: "multi" });
    await phase("up multi again", () => upWithRepair(t!, db.url, collect(t!), repairs));
    await phase("after (v2)", () => new Promise((r) => setTimeout(r, 3000)));
    const report = await fleet.stop();
    fleet = undefined;
    const again = await checkMulti(db.url);
    invariants["multi after migrating again"] = { orgs: again.orgs, violations: again.violations.length, samples: again.violations.slice(0, 5) };
    const ledger = await checkLedger(db.url, report, since);
    const r: ZeroDowntimeResult = {
      orgs,
      consumers: a.consumers,
      calls: report.calls,
      twoArg: report.twoArg,
      fourArg: report.fourArg,
      successes: report.successes,
      refusals: report.refusals,
      replays: report.replays,
      replayMismatches: report.replayMismatches.length,
      fourArgRefusedWithoutV2: report.fourArgRefusedWithoutV2,
      failures: report.failureCount,
      failureSamples: report.failures.slice(0, 5),
      ledger: {
        mismatches: ledger.mismatches.length,
        samples: ledger.mismatches.slice(0, 5),
        logSuccesses: ledger.logSuccesses,
        clientSuccesses: ledger.clientSuccesses,
        logRefusals: ledger.logRefusals,
        clientRefusals: ledger.clientRefusals,
      },
      invariants,
      phases: Object.fromEntries(Object.entries(windows).map(([k, w]) => [k, { ...phaseStats(report, w.from, w.to), seconds: secs(w.to - w.from) }])),
      repairs,
      passed: false,
    };
    r.passed =
      r.failures === 0 &&
      r.replayMismatches === 0 &&
      r.ledger.mismatches === 0 &&
      r.ledger.logSuccesses === r.ledger.clientSuccesses &&
      Object.values(r.invariants).every((x) => x.violations === 0 && x.orgs === orgs);
    log(
      `zero-downtime ${fmt(orgs)}: ${r.passed ? "PASSED" : "FAILED"}: ${fmt(r.calls)} calls, ${r.failures} failures, ledger mismatches ${r.ledger.mismatches}`,
    );
    return r;
  } finally {
    await fleet?.stop().catch(() => undefined);
    if (t) {
      t.destroyWorkspace();
      fs.rmSync(t.stateDir, { recursive: true, force: true });
    }
    await dropDatabase(server, db.name).catch(() => undefined);
  }
}
