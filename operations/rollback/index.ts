/**
 * One command back to an earlier update of the stack: its config and the program of its commit.
 *
 *   npm run rollback -- --stack <name> [--to <version>] [--yes | --dry-run] [--config-file F] [--cwd DIR] [--out report.md] [--json]
 *   (--help: the options; operations/shared/cli.ts)
 *
 *   1. reads the stack history (operations/stack/stackHistory.ts); the target is --to, else the last successful update before the
 *      current one. Its config (secrets decrypted by the stack's current secrets provider) and its git commit.
 *   2. previews the stack with that config (a temporary copy of the stack settings file: the real one is not touched yet)
 *      and, when the commit differs from HEAD, with that commit's program in a temporary git worktree
 *      (operations/stack/programCheckout.ts); prints the preview and the database facts that will change (organizations per
 *      credit model, the functions replaced, what happens to balances), then asks for confirmation unless --yes.
 *      --dry-run stops here with exit 0: the plan is printed, nothing was written and nothing asked (no terminal needed);
 *      with --json the plan is one JSON document on stdout (resultJson) and the lines go to stderr.
 *   3. writes the target's config into the stack settings, runs `pulumi up` (same program, same config), verifies the
 *      result against the database (the stack's verification outputs and its own queries), and writes the report
 *      (operations/report buildReport) to .guardian/reports/<stack>-rollback-v<version>.md (+ .svg).
 *
 * Refusals (one message on stderr, nothing written, exit 2): no such version or no earlier successful update; the
 * target is not an update or it failed; its commit is not in the repository (or the project is not in one); its
 * secrets cannot be decrypted with the stack's current secrets provider; the stack is locked by another update; the
 * database cannot be read; the preview fails; the operator declines, or there is no terminal and no --yes.
 * Rolling back to the current version does nothing and says so (exit 0).
 *
 * Exit codes: 0 done (or nothing to do, or a dry run); 2 refused, nothing written; 1 failed after the stack config was written
 * (the up or the verification failed, or the report could not be written), or an unexpected error.
 *
 * On a failed up the stack config KEEPS the target's values, on purpose: the update stopped part way (the history
 * shows it as failed) and its steps are resumable (backup, backfill and rollback are idempotent), so the way forward
 * is to run the same update again (`pulumi up --stack <name>`, or this command with --to <target>), not to run the
 * other direction over a half-done one. Only when the up did not start at all (another update took the stack lock in
 * between) is the settings file restored byte for byte, and that is a refusal.
 *
 * Layers: operations/stack/stackHistory.ts and operations/stack/programCheckout.ts are the engine; the steps
 * (operations/rollback/steps.ts, each callable alone) and rollbackCommand() below, which runs them in order, the API
 * (tests call it in-process); scripts/rollback.ts the command line.
 */
import { RollbackRefusal } from "../stack/stackHistory";
import { checkOptions, confirm, preview, prepareSettings, readDatabase, readTarget, resolveTarget, stopIfDryRun, up, verifyUpdate, writeReport } from "./steps";
import { type RollbackContext, RollbackFailure, type RollbackOptions, type RollbackResult } from "./types";

export { dbFacts, describeChanges, verify } from "./database";
export { resultJson } from "./result";
export * as steps from "./steps";
export type { DbFacts, FactCheck, RollbackOptions, RollbackOutcome, RollbackResult } from "./types";

/** The command as an API: never throws; the result carries the exit code. The steps share one context; the cleanups
 *  (temporary settings file, worktree) run at the end whatever happened, last one first. */
export async function rollbackCommand(opts: RollbackOptions): Promise<RollbackResult> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const error = opts.error ?? opts.log ?? ((s: string) => console.error(s));
  const cleanups: (() => void)[] = [];
  const result: Partial<RollbackResult> = {};
  try {
    return await run({ opts, log, cleanups, result, cwd: "" });
  } catch (e) {
    if (e instanceof RollbackRefusal) {
      error(e.message);
      return { ...result, exitCode: 2, outcome: "refused", message: e.message };
    }
    const message = e instanceof RollbackFailure ? e.message : `rollback failed: ${(e as { stack?: unknown } | null | undefined)?.stack ?? e}`;
    error(message);
    return { ...result, ...(e instanceof RollbackFailure ? e.partial : {}), exitCode: 1, outcome: "failed", message };
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        c();
      } catch {
        /* cleanup is best effort */
      }
    }
  }
}

async function run(base: RollbackContext): Promise<RollbackResult> {
  base.cwd = checkOptions(base.opts);
  const resolved = await resolveTarget(base);
  if ("exitCode" in resolved) return resolved;
  const ctx = await readDatabase(await prepareSettings(await readTarget(resolved)));
  const previewed = await preview(ctx);
  const stop = stopIfDryRun(previewed) ?? (await confirm(previewed));
  if (stop) return stop;
  return writeReport(await verifyUpdate(await up(previewed)));
}
