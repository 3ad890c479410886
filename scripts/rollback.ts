/**
 * One command back to an earlier update of the stack: its config and the program of its commit.
 *
 *   npm run rollback -- --stack <name> [--to <version>] [--yes | --dry-run] [--config-file F] [--cwd DIR] [--out report.md] [--json]
 *   (--help: the options; lib/cli.ts)
 *
 *   1. reads the stack history (operations/stack/stackHistory.ts); the target is --to, else the last successful update before the
 *      current one. Its config (secrets decrypted by the stack's current secrets provider) and its git commit.
 *   2. previews the stack with that config (a temporary copy of the stack settings file: the real one is not touched yet)
 *      and, when the commit differs from HEAD, with that commit's program in a temporary git worktree
 *      (operations/stack/programCheckout.ts); prints the preview and the database facts that will change (organizations per
 *      credit model, the functions replaced, the balances reconciled), then asks for confirmation unless --yes.
 *      --dry-run stops here with exit 0: the plan is printed, nothing was written and nothing asked (no terminal needed);
 *      with --json the plan is one JSON document on stdout (resultJson) and the lines go to stderr.
 *   3. writes the target's config into the stack settings, runs `pulumi up` (same program, same config), verifies the
 *      result against the database (the stack's verification outputs and its own queries), and writes the report
 *      (scripts/report.ts buildReport) to .guardian/reports/<stack>-rollback-v<version>.md (+ .svg).
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
 * Layers: operations/stack/stackHistory.ts and operations/stack/programCheckout.ts are the engine, rollbackCommand() the API (tests call it
 * in-process), main() the CLI.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as readline from "readline";
import type { ConfigMap, OutputMap, PreviewResult, Stack, UpResult } from "@pulumi/pulumi/automation";
import {
  command,
  existingDir,
  flag,
  jsonFlag,
  option,
  outputPath,
  parseCommand,
  positiveInteger,
  printJson,
  runCommandLine,
  text,
  type Values,
} from "../lib/cli";
import { parseConfig, tlsSettings } from "../lib/config";
import { redactSecrets, redactUrl, withClient } from "../lib/db";
import { PROJECT_ROOT } from "../lib/pgserver";
import { addWorktree, type GitRepo, hasCommit, repoOf, type Worktree } from "../operations/stack/programCheckout";
import {
  cliError,
  configChanges,
  configWithSecrets,
  describeEntry,
  type HistoryEntry,
  isLockedError,
  lockRefusal,
  readConfigFile,
  readHistory,
  RollbackRefusal,
  showValue,
  stackConfigFile,
  stackLocks,
  writeConfigFile,
} from "../operations/stack/stackHistory";
import { openStack } from "../lib/workspace";
import { buildReport } from "./report";

export interface RollbackOptions {
  stack: string;
  /** Target version (default: the last successful update before the current one). */
  to?: number;
  /** Skip the confirmation (CI). */
  yes?: boolean;
  /** Compute and print the plan (target, config diff, program, database facts, preview) and stop: nothing is written,
   *  nothing is asked. The result's outcome is "dry-run", exit code 0. */
  dryRun?: boolean;
  /** Project directory (default: this project). */
  cwd?: string;
  /** Stack settings file, as `pulumi --config-file` (default: Pulumi.<stack>.yaml in the project directory). */
  configFile?: string;
  /** Extra environment for the CLI (backend URL, passphrase...), added to process.env. */
  envVars?: Record<string, string>;
  /** Report path (default: <project>/.guardian/reports/<stack>-rollback-v<version>.md). */
  out?: string;
  /** Where the command's lines go (default: stdout; refusals and failures: stderr). */
  log?: (line: string) => void;
  error?: (line: string) => void;
  /** Asks the operator (default: readline on a terminal; without one, --yes is required). */
  confirm?: (question: string) => Promise<boolean>;
  /** Where the terminal question is written (default: stdout; the CLI's --json uses stderr). */
  promptOutput?: NodeJS.WritableStream;
}

export type RollbackOutcome = "rolled-back" | "nothing-to-do" | "dry-run" | "refused" | "declined" | "failed";

export interface DbFacts {
  orgsTotal: number;
  orgsByModel: Record<string, number>;
  /** consume_credits_rpc / consume_credits_batch in public, with md5(pg_get_functiondef). */
  functions: { signature: string; md5: string }[];
  backup: { backupId: string; createdAt: string; v1Md5: string | null } | null;
  /** Successful consumptions not in the latest backup, and their unified cost (what a rollback subtracts). */
  sinceBackup: { successes: number; unifiedCost: number } | null;
}

export interface FactCheck {
  fact: string;
  /** Where the expected value comes from: a stack output of the update, or what the target model implies. */
  source: "output" | "model";
  expected: unknown;
  database: unknown;
  agrees: boolean;
}

export interface RollbackResult {
  exitCode: 0 | 1 | 2;
  outcome: RollbackOutcome;
  message: string;
  currentVersion?: number;
  targetVersion?: number;
  /** Version of the update this command ran. */
  newVersion?: number;
  /** Commit whose program was previewed and run, and whether it needed a worktree. */
  commit?: string;
  usedWorktree?: boolean;
  /** The stack config keys the target changes, values as printed (a secret is "[secret]"). */
  configChanges?: { key: string; from: string; to: string }[];
  /** The target's credit model and its database (password redacted). */
  model?: string;
  database?: string;
  /** What the target implies in the database, as printed (organizations per model, functions, balances). */
  databaseChanges?: string[];
  before?: DbFacts;
  after?: DbFacts;
  checks?: FactCheck[];
  reportPath?: string;
  preview?: PreviewResult;
  up?: UpResult;
}

const V1 = "consume_credits_rpc(uuid,text)";
const V2 = "consume_credits_rpc(uuid,text,integer,text)";
const BATCH = "consume_credits_batch(uuid,jsonb)";
const FUNCTIONS_OF: Record<string, string[]> = { unified: [V1], multi: [BATCH, V2] };
const fmt = (n: number) => n.toLocaleString("en-US");

class RollbackFailure extends Error {
  constructor(
    message: string,
    readonly partial: Partial<RollbackResult> = {},
  ) {
    super(message);
    this.name = "RollbackFailure";
  }
}

/** The command as an API: never throws; the result carries the exit code. */
export async function rollbackCommand(opts: RollbackOptions): Promise<RollbackResult> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const error = opts.error ?? opts.log ?? ((s: string) => console.error(s));
  const cleanups: (() => void)[] = [];
  const result: Partial<RollbackResult> = {};
  try {
    return await run(opts, log, cleanups, result);
  } catch (e: any) {
    if (e instanceof RollbackRefusal) {
      error(e.message);
      return { ...result, exitCode: 2, outcome: "refused", message: e.message };
    }
    const message = e instanceof RollbackFailure ? e.message : `rollback failed: ${e?.stack ?? e}`;
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

async function run(opts: RollbackOptions, log: (s: string) => void, cleanups: (() => void)[], result: Partial<RollbackResult>): Promise<RollbackResult> {
  const cwd = path.resolve(opts.cwd ?? PROJECT_ROOT);
  if (!fs.existsSync(path.join(cwd, "Pulumi.yaml"))) throw new RollbackRefusal(`rollback refused: ${cwd} is not a Pulumi project (no Pulumi.yaml)`);
  if (opts.to !== undefined && !(Number.isInteger(opts.to) && opts.to > 0))
    throw new RollbackRefusal(`rollback refused: --to expects a version number (a positive integer), got ${opts.to}`);

  // 1. The stack, its locks, its history, the target.
  let stack: Stack;
  try {
    stack = await openStack({ stackName: opts.stack, workDir: cwd, envVars: opts.envVars });
  } catch (e) {
    throw new RollbackRefusal(`rollback refused: cannot open stack "${opts.stack}": ${cliError(e).replace(/^error:\s*/, "")}`);
  }
  const locks = await stackLocks(stack);
  if (locks.length) throw lockRefusal(stack.name, locks);

  const history = await readHistory(stack);
  if (!history.length) throw new RollbackRefusal(`rollback refused: stack ${stack.name} has no update in its history`);
  const current = history[0];
  result.currentVersion = current.version;
  if (current.result === "in-progress") throw lockRefusal(stack.name, [], `version ${current.version} is still in progress`);

  let target: HistoryEntry | undefined;
  if (opts.to !== undefined) {
    target = history.find((h) => h.version === opts.to);
    if (!target) {
      throw new RollbackRefusal(
        `rollback refused: stack ${stack.name} has no version ${opts.to} (its history holds versions ${history[history.length - 1].version} to ${current.version})`,
      );
    }
  } else {
    target = history.slice(1).find((h) => h.kind === "update" && h.result === "succeeded");
    if (!target) throw new RollbackRefusal(`rollback refused: stack ${stack.name} has no successful update before its current version ${current.version}`);
  }
  result.targetVersion = target.version;
  log(`rollback: stack ${stack.name}, project ${cwd}`);
  log(`  current  ${describeEntry(current)}`);
  log(`  target   ${describeEntry(target)}`);
  if (target.kind !== "update")
    throw new RollbackRefusal(`rollback refused: version ${target.version} is a ${target.kind}, not an update: it has no program run to return to`);
  if (target.result !== "succeeded") {
    throw new RollbackRefusal(
      `rollback refused: version ${target.version} ${target.result === "failed" ? "failed" : `ended "${target.result}"`}: only a successful update is a state to return to`,
    );
  }
  if (target.version === current.version) {
    const message = `rollback: stack ${stack.name} is already at version ${target.version}: nothing to do (no preview, no update, nothing written)`;
    log(message);
    return { ...result, exitCode: 0, outcome: "nothing-to-do", message } as RollbackResult;
  }
  // Without --yes the operator confirms on a terminal; find out now, not after a preview.
  if (!opts.yes && !opts.dryRun && !opts.confirm && !process.stdin.isTTY) {
    throw new RollbackRefusal("rollback refused: no terminal to confirm on and --yes not given; nothing was written");
  }

  // 2. Its config (secrets decrypted, or a refusal) and its program.
  const targetConfig = await configWithSecrets(stack, target);
  const repo = repoOf(cwd);
  let useCommit: string | undefined;
  if (target.commit) {
    if (!repo)
      throw new RollbackRefusal(
        `rollback refused: version ${target.version} ran the program of commit ${target.commit}, but ${cwd} is not in a git repository`,
      );
    if (!hasCommit(repo, target.commit)) {
      throw new RollbackRefusal(
        `rollback refused: commit ${target.commit} (the program of version ${target.version}) is not in the repository at ${repo.top}. ` +
          `Fetch it (git fetch origin ${target.commit}) and run the command again.`,
      );
    }
    if (target.commit !== repo.head) useCommit = target.commit;
  }
  result.commit = target.commit ?? repo?.head;
  result.usedWorktree = !!useCommit;
  const targetNotes: string[] = [];
  if (!target.commit) targetNotes.push(`version ${target.version} recorded no git commit: the program is the one in ${cwd} as it is now`);
  else if (target.dirty)
    targetNotes.push(`version ${target.version} ran from commit ${target.commit.slice(0, 10)} with uncommitted changes; the commit is what can be checked out`);

  // 3. The config as it is now, and a temporary settings file with the target's (same secrets provider).
  const settingsFile = stackConfigFile(stack, opts.configFile);
  const settingsExisted = fs.existsSync(settingsFile);
  const currentConfig: ConfigMap = settingsExisted ? await readConfigFile(stack, settingsFile) : {};
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "guardian-rollback-config-"));
  cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const previewSettings = path.join(tmp, path.basename(settingsFile));
  if (settingsExisted) fs.copyFileSync(settingsFile, previewSettings);
  await writeConfigFile(stack, previewSettings, currentConfig, targetConfig);

  const changes = configChanges(currentConfig, targetConfig);
  result.configChanges = changes.map((c) => ({ key: c.key, from: showValue(c.from), to: showValue(c.to) }));
  log(`  config   ${changes.length ? `${changes.length} key(s) differ from the stack's config now:` : "the same as the stack's config now"}`);
  for (const c of changes) {
    const secret = c.from?.secret && c.to?.secret ? " (another secret value)" : "";
    log(`    ${c.key}: ${showValue(c.from)} -> ${showValue(c.to)}${secret}`);
  }
  log(
    `  program  ${useCommit ? `commit ${useCommit.slice(0, 10)} (HEAD is ${repo!.head.slice(0, 10)}): checked out in a temporary worktree` : `${repo ? `HEAD ${repo.head.slice(0, 10)}` : "not in git"}: the project directory as it is`}`,
  );
  for (const n of targetNotes) log(`  note     ${n}`);

  // 4. What will change in the database.
  const model = String(targetConfig["guardian:creditModel"]?.value ?? "unified");
  const databaseUrl = targetConfig["guardian:databaseUrl"]?.value;
  if (!databaseUrl) throw new RollbackRefusal(`rollback refused: the config of version ${target.version} has no guardian:databaseUrl`);
  // The target's TLS settings (guardian:tls), as the program reads them, for the command's own queries.
  let tls: ReturnType<typeof tlsSettings>;
  try {
    const tlsRaw = targetConfig["guardian:tls"]?.value;
    tls = tlsSettings(parseConfig({ databaseUrl, ...(tlsRaw !== undefined ? { tls: tlsRaw } : {}) }), cwd);
  } catch (e: any) {
    throw new RollbackRefusal(`rollback refused: the config of version ${target.version}: ${redactSecrets(String(e?.message ?? e), databaseUrl)}`);
  }
  let before: DbFacts;
  try {
    before = await withClient(databaseUrl, dbFacts, tls);
  } catch (e: any) {
    throw new RollbackRefusal(
      `rollback refused: cannot read the database of version ${target.version}: ${redactSecrets(String(e?.message ?? e), databaseUrl)}`,
    );
  }
  result.before = before;
  result.model = model;
  result.database = redactUrl(databaseUrl);
  const dbLines = describeChanges(before, model, redactUrl(databaseUrl));
  result.databaseChanges = dbLines.slice(1).map((l) => l.trim());
  for (const line of dbLines) log(line);

  // 5. Preview: the target's program and config.
  let programStack = stack;
  const programEnv: Record<string, string> = { ...(opts.envVars ?? {}) };
  if (useCommit) {
    let wt: Worktree;
    try {
      wt = addWorktree(repo as GitRepo, useCommit, path.join(cwd, "node_modules"));
    } catch (e: any) {
      throw new RollbackRefusal(
        `rollback refused: cannot check out commit ${useCommit} in a temporary worktree: ${String(e?.stderr ?? e?.message ?? e).trim()}`,
      );
    }
    cleanups.push(() => wt.remove());
    // The backup export of a forward migration must outlive the worktree: keep it where the project keeps it.
    programEnv.GUARDIAN_EXPORT_ROOT ??= process.env.GUARDIAN_EXPORT_ROOT ?? path.resolve(cwd, exportDirOf(targetConfig));
    programStack = await openStack({ stackName: stack.name, workDir: wt.projectDir, envVars: programEnv });
    log(`  worktree ${wt.root}`);
  }
  const echo = lineWriter(log, "  | ");
  log(`--- pulumi preview: version ${target.version}'s config${useCommit ? ` and the program of ${useCommit.slice(0, 10)}` : ""} ---`);
  let preview: PreviewResult;
  try {
    preview = await programStack.preview({ configFile: previewSettings, color: "never", onOutput: echo.write });
  } catch (e) {
    echo.flush();
    if (isLockedError(e)) throw lockRefusal(stack.name, await stackLocks(stack), cliError(e));
    throw new RollbackRefusal(`rollback refused: the preview of version ${target.version} failed, nothing was changed: ${cliError(e)}`);
  }
  echo.flush();
  result.preview = preview;
  const summary = Object.entries(preview.changeSummary ?? {}).filter(([k, v]) => k !== "same" && v > 0);
  log(
    `--- preview: ${summary.length ? summary.map(([k, v]) => `${v} to ${k}`).join(", ") : "no resource changes"}; ${preview.changeSummary?.same ?? 0} unchanged ---`,
  );

  // 6. A dry run stops here: the plan is printed, nothing was written (the preview used a temporary settings file and,
  // for another commit, a temporary worktree; both are removed by the cleanups).
  if (opts.dryRun) {
    const again = [`--stack ${stack.name}`, `--to ${target.version}`];
    if (opts.configFile) again.push(`--config-file ${opts.configFile}`);
    if (opts.cwd && path.resolve(opts.cwd) !== PROJECT_ROOT) again.push(`--cwd ${opts.cwd}`);
    const message =
      `rollback: dry run: nothing was written (stack ${stack.name} stays at version ${current.version}). ` +
      `To apply this plan: npm run rollback -- ${again.join(" ")} --yes`;
    log(message);
    return { ...result, exitCode: 0, outcome: "dry-run", message } as RollbackResult;
  }

  // 7. Confirmation.
  if (!opts.yes) {
    const question = `Update stack ${stack.name} to version ${target.version}'s config and program (pulumi up)? Type "yes" to continue: `;
    let ok: boolean;
    if (opts.confirm) ok = await opts.confirm(question);
    else ok = await askOnTerminal(question, opts.promptOutput);
    if (!ok) {
      const message = `rollback: declined; nothing was written (stack ${stack.name} stays at version ${current.version})`;
      log(message);
      return { ...result, exitCode: 2, outcome: "declined", message } as RollbackResult;
    }
  }

  // 8. The update. The lock is checked again: the preview took time, and an up that finds the stack locked has not started.
  const lateLocks = await stackLocks(stack);
  if (lateLocks.length) throw lockRefusal(stack.name, lateLocks);
  const original = settingsExisted ? fs.readFileSync(settingsFile) : undefined;
  const restoreSettings = () => (original ? fs.writeFileSync(settingsFile, original) : fs.rmSync(settingsFile, { force: true }));
  try {
    await writeConfigFile(stack, settingsFile, currentConfig, targetConfig);
  } catch (e) {
    restoreSettings();
    throw e;
  }
  log(`rollback: stack config set to version ${target.version}'s values (${shortPath(settingsFile)})`);
  log(`--- pulumi up ---`);
  let up: UpResult;
  try {
    up = await programStack.up({ configFile: settingsFile, color: "never", onOutput: echo.write, message: `rollback to version ${target.version}` });
  } catch (e) {
    echo.flush();
    if (isLockedError(e)) {
      restoreSettings();
      throw lockRefusal(stack.name, await stackLocks(stack), cliError(e));
    }
    const after = await readHistory(stack).catch(() => undefined);
    throw new RollbackFailure(
      `rollback failed: pulumi up failed${after?.[0] ? ` (recorded as version ${after[0].version})` : ""}: ${cliError(e)}\n` +
        `  The stack config keeps version ${target.version}'s values: the steps resume where they stopped, so run the same update again ` +
        `(npm run rollback -- --stack ${stack.name} --to ${target.version}${opts.configFile ? ` --config-file ${opts.configFile}` : ""}). ` +
        `To abandon it instead: npm run rollback -- --stack ${stack.name} --to ${current.version}.`,
      { ...result, newVersion: after?.[0]?.version },
    );
  }
  echo.flush();
  result.up = up;
  const newVersion = (await readHistory(stack))[0]?.version;
  result.newVersion = newVersion;

  // 9. Verification from the database.
  const after = await withClient(databaseUrl, dbFacts, tls);
  result.after = after;
  const checks = verify(model, up.outputs, after);
  result.checks = checks;
  log(`rollback: verification of version ${newVersion} against the database ${redactUrl(databaseUrl)}`);
  for (const c of checks) {
    const expected = c.source === "output" ? `output ${JSON.stringify(c.expected)}` : `${model} model ${JSON.stringify(c.expected)}`;
    log(`  ${c.agrees ? "ok  " : "FAIL"} ${c.fact}: ${expected}, database ${JSON.stringify(c.database)}`);
  }
  const failed = checks.filter((c) => !c.agrees);
  if (failed.length) {
    throw new RollbackFailure(
      `rollback failed: the update ran (version ${newVersion}) but the database disagrees: ${failed.map((c) => c.fact).join(", ")}`,
      result,
    );
  }

  // 10. The report. --out may name a directory (or end with a slash): the report goes into it under its default name.
  const reportName = `${stack.name.split("/").pop()}-rollback-v${newVersion}.md`;
  let out = path.resolve(cwd, opts.out ?? path.join(".guardian", "reports", reportName));
  if (opts.out !== undefined && (/[\\/]$/.test(opts.out) || isDirectory(out))) out = path.join(out, reportName);
  try {
    const r = await buildReport({
      stack,
      configFile: opts.configFile ? settingsFile : undefined,
      svgFileName: `${path.basename(out).replace(/\.md$/i, "")}.svg`,
    });
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, r.markdown);
    fs.writeFileSync(`${out.replace(/\.md$/i, "")}.svg`, r.svg);
    result.reportPath = out;
  } catch (e: any) {
    throw new RollbackFailure(
      `rollback failed: the update ran and was verified (version ${newVersion}), but the report could not be written: ${e?.message ?? e}`,
      result,
    );
  }
  const message =
    `rollback: done. Stack ${stack.name} is at version ${newVersion}: version ${target.version}'s config and program ` +
    `(${
      Object.entries(after.orgsByModel)
        .map(([k, v]) => `${fmt(v)} orgs ${k}`)
        .join(", ") || "no orgs"
    }). Report: ${shortPath(out)}`;
  log(message);
  return { ...result, exitCode: 0, outcome: "rolled-back", message } as RollbackResult;
}

// ---------------------------------------------------------------------------------------------------------------
// Database facts

export async function dbFacts(c: import("pg").Client): Promise<DbFacts> {
  const one = async (sql: string, params: unknown[] = []) => (await c.query(sql, params as any[])).rows[0];
  const shape = await one(`
    SELECT to_regclass('public.organization_credits') IS NOT NULL AS has_table,
           EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public.organization_credits')
                      AND attname = 'credit_model' AND NOT attisdropped) AS has_model,
           to_regclass('guardian.backups') IS NOT NULL AS has_backups`);
  const orgsByModel: Record<string, number> = {};
  if (shape.has_table) {
    const rows = (
      await c.query(
        shape.has_model
          ? `SELECT credit_model AS model, count(*)::int AS n FROM public.organization_credits GROUP BY 1 ORDER BY 1`
          : `SELECT 'unified' AS model, count(*)::int AS n FROM public.organization_credits HAVING count(*) > 0`,
      )
    ).rows;
    for (const r of rows) orgsByModel[r.model] = r.n;
  }
  const functions = (
    await c.query(`
    SELECT p.oid::regprocedure::text AS signature, md5(pg_get_functiondef(p.oid)) AS md5
      FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('consume_credits_rpc', 'consume_credits_batch')
     ORDER BY 1`)
  ).rows;
  let backup: DbFacts["backup"] = null;
  let sinceBackup: DbFacts["sinceBackup"] = null;
  if (shape.has_backups) {
    const b = await one(
      `
      SELECT b.backup_id, b.created_at,
             (SELECT f ->> 'def_md5' FROM jsonb_array_elements(b.functions) f WHERE f ->> 'signature' = $1 LIMIT 1) AS v1_md5
        FROM guardian.backups b
       WHERE b.restore_verified AND to_regnamespace(b.schema_name) IS NOT NULL
       ORDER BY b.created_at DESC LIMIT 1`,
      [V1],
    );
    if (b && /^guardian_backup_[0-9a-f_]+$/.test(b.backup_id)) {
      backup = { backupId: b.backup_id, createdAt: new Date(b.created_at).toISOString(), v1Md5: b.v1_md5 };
      const s = await one(`
        SELECT count(*)::int AS n, coalesce(sum(l.credits_consumed), 0)::bigint AS cost
          FROM public.credit_consumption_logs l
         WHERE l.success AND NOT EXISTS (SELECT 1 FROM ${b.backup_id}.credit_consumption_logs x WHERE x.id = l.id)`);
      sinceBackup = { successes: s.n, unifiedCost: Number(s.cost) };
    }
  }
  const orgsTotal = Object.values(orgsByModel).reduce((a, b) => a + b, 0);
  return { orgsTotal, orgsByModel, functions, backup, sinceBackup };
}

/** What the target model implies, against the database now. */
export function describeChanges(now: DbFacts, model: string, where: string): string[] {
  const L: string[] = [`  database ${where}`];
  const after = now.orgsTotal ? `${model} ${fmt(now.orgsTotal)}` : "none";
  const nowText =
    Object.entries(now.orgsByModel)
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(", ") || "none";
  L.push(`    organizations per model: ${nowText} -> ${after}${nowText === after ? " (unchanged)" : ""}`);
  const want = FUNCTIONS_OF[model] ?? [];
  const have = now.functions.map((f) => f.signature);
  const dropped = have.filter((s) => !want.includes(s));
  const added = want.filter((s) => !have.includes(s));
  if (!dropped.length && !added.length) L.push(`    functions: ${have.join(", ") || "none"} (unchanged)`);
  for (const s of dropped) {
    const md5 = now.functions.find((f) => f.signature === s)!.md5;
    const by =
      s === V2 && added.includes(V1)
        ? ` replaced by ${V1}${now.backup ? `, v1 as recorded in backup ${now.backup.backupId} (md5 ${now.backup.v1Md5})` : ""}`
        : s === V1 && added.includes(V2)
          ? ` replaced by ${V2} (v2)`
          : " dropped";
    L.push(`    function ${s} (md5 ${md5}):${by}`);
  }
  for (const s of added.filter((a) => !((a === V1 && dropped.includes(V2)) || (a === V2 && dropped.includes(V1))))) L.push(`    function ${s}: created`);
  if (model === "unified" && (now.orgsByModel.multi ?? 0) > 0) {
    L.push(
      now.backup && now.sinceBackup
        ? `    balances: credits_remaining of ${fmt(now.orgsByModel.multi)} orgs = their value in backup ${now.backup.backupId} minus the unified cost of ` +
            `${fmt(now.sinceBackup.successes)} successful consumptions since (${fmt(now.sinceBackup.unifiedCost)} credits in all), floored at 0`
        : `    balances: reconciled by the Rollback resource (no verified backup found now: it will refuse)`,
    );
  } else if (model === "multi" && (now.orgsByModel.unified ?? 0) > 0) {
    L.push(`    balances: a new backup is taken, then ${fmt(now.orgsByModel.unified)} orgs are allocated to the four pools from their current balances`);
  }
  return L;
}

/** The facts the update must have produced, from the stack's outputs and from the database. */
export function verify(model: string, outputs: OutputMap, db: DbFacts): FactCheck[] {
  const out = (k: string) => outputs[k]?.value;
  const checks: FactCheck[] = [];
  // A fact the program (of an older commit) does not export is not checked; what the model implies always is.
  const add = (fact: string, source: FactCheck["source"], expected: unknown, database: unknown) => {
    if (expected !== undefined) checks.push({ fact, source, expected, database, agrees: JSON.stringify(expected) === JSON.stringify(database) });
  };
  const agree = (fact: string, expected: unknown, database: unknown) => add(fact, "output", expected, database);
  agree("creditModel", out("creditModel"), model);
  agree("orgsTotal", out("orgsTotal"), db.orgsTotal);
  add("organizations per model", "model", db.orgsTotal ? { [model]: db.orgsTotal } : {}, db.orgsByModel);
  add("functions", "model", [...(FUNCTIONS_OF[model] ?? [])].sort(), db.functions.map((f) => f.signature).sort());
  const facts = out("verification") ?? {};
  if (model === "multi") {
    agree("orgsMigrated", out("orgsMigrated"), db.orgsByModel.multi ?? 0);
  } else {
    agree("verification.orgsMulti", facts.orgsMulti, db.orgsByModel.multi ?? 0);
    if (out("rolledBack")) agree("v1DefinitionMd5", out("v1DefinitionMd5"), db.functions.find((f) => f.signature === V1)?.md5 ?? null);
  }
  return checks;
}

/** A path relative to the current directory when it is inside it, else absolute. */
function shortPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

function exportDirOf(config: ConfigMap): string {
  try {
    const b = JSON.parse(String(config["guardian:backup"]?.value ?? "{}"));
    if (typeof b?.exportDir === "string" && b.exportDir) return b.exportDir;
  } catch {
    /* the default */
  }
  return path.join(".guardian", "backups");
}

/** Engine output arrives in chunks; print it line by line with a prefix. */
function lineWriter(log: (s: string) => void, prefix: string) {
  let buf = "";
  return {
    write: (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        log(prefix + buf.slice(0, i).replace(/\r/g, ""));
        buf = buf.slice(i + 1);
      }
    },
    flush: () => {
      if (buf.trim()) log(prefix + buf.replace(/\r/g, ""));
      buf = "";
    },
  };
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function askOnTerminal(question: string, output: NodeJS.WritableStream = process.stdout): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      resolve(/^y(es)?$/i.test(answer.trim()));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

export const COMMAND = command({
  name: "rollback",
  summary: [
    "Returns the stack to an earlier update of its history (pulumi stack history, 1 = oldest): that update's config and",
    "the program of its git commit (checked out in a temporary worktree). Prints the target, the config keys that change,",
    "the program, what changes in the database and the preview; asks for confirmation (or --yes), runs pulumi up,",
    "verifies the result against the database and writes the report. --dry-run prints the plan and stops.",
    "The backend and passphrase come from the environment (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE[_FILE]).",
  ],
  options: {
    stack: option(text("a stack name"), { valueName: "NAME", description: "the stack to roll back", required: true }),
    to: option(positiveInteger("a version number (a positive integer)"), {
      valueName: "VERSION",
      description: "the version to return to",
      defaultText: "the last successful update before the current one",
    }),
    yes: flag("do not ask for confirmation (CI)", { short: "y" }),
    dryRun: flag(
      "print the plan (target, config diff, program, database facts, preview summary) and stop: nothing is written, nothing asked, no terminal needed",
    ),
    configFile: option(outputPath(), {
      valueName: "FILE",
      description: "stack settings file, as pulumi --config-file",
      defaultText: "Pulumi.<stack>.yaml in the project",
    }),
    cwd: option(existingDir(), { valueName: "DIR", description: "the project directory", defaultText: "this checkout" }),
    out: option(text("a file or directory path"), {
      valueName: "PATH",
      description: "the report (the SVG goes beside it); a directory, or a path ending in /, gets the default name in it; relative to --cwd",
      defaultText: ".guardian/reports/<stack>-rollback-v<version>.md",
    }),
    json: jsonFlag("the result (outcome, exit code, versions, config changes, database facts, preview summary, checks, report path)"),
  },
  alternatives: [["yes", "dryRun"]],
  conflicts: [
    { options: ["dryRun", "yes"], reason: "a dry run asks nothing and changes nothing" },
    { options: ["dryRun", "out"], reason: "a dry run writes no report" },
  ],
  check: (v) => {
    if (v.out === undefined) return undefined;
    try {
      outputPath({ directoryOk: true })(path.resolve(v.cwd ?? PROJECT_ROOT, v.out));
    } catch (e: any) {
      return `--out: ${e.message}, got ${JSON.stringify(v.out)}`;
    }
    return undefined;
  },
  exitCodes: [
    "0 done and verified (or nothing to do, or a dry run)",
    "2 refused, nothing written (also bad arguments and a declined confirmation)",
    "1 failed after the stack config was written (the output names the command to run again), or an unexpected error",
  ],
});

function toOptions(v: Values<typeof COMMAND.options>): RollbackOptions {
  const o: RollbackOptions = { stack: v.stack };
  if (v.to !== undefined) o.to = v.to;
  if (v.yes) o.yes = true;
  if (v.dryRun) o.dryRun = true;
  if (v.configFile !== undefined) o.configFile = v.configFile;
  if (v.cwd !== undefined) o.cwd = v.cwd;
  if (v.out !== undefined) o.out = v.out;
  return o;
}

/** The command line as RollbackOptions (throws UsageError, lib/cli.ts), or "help". */
export function parseArgs(argv: string[]): (RollbackOptions & { json: boolean }) | "help" {
  const p = parseCommand(COMMAND, argv);
  return p.help ? "help" : { ...toOptions(p.values), json: p.values.json };
}

/** The result as one JSON document: the raw preview and up (engine text, decrypted outputs) are summarised. */
export function resultJson(r: RollbackResult): Record<string, unknown> {
  const { exitCode, outcome, message, preview, up, ...rest } = r;
  return {
    exitCode,
    outcome,
    message,
    ...rest,
    preview: preview ? { changeSummary: preview.changeSummary ?? {} } : undefined,
    up: up ? { result: up.summary?.result, resourceChanges: up.summary?.resourceChanges ?? {} } : undefined,
  };
}

export async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  const opts = toOptions(cli.values);
  // With --json, stdout carries the document only: the lines (and a terminal question) go to stderr.
  const toStderr = (s: string) => console.error(s);
  if (cli.values.json) Object.assign(opts, { log: toStderr, error: toStderr, promptOutput: process.stderr });
  const r = await rollbackCommand(opts);
  if (cli.values.json) printJson(resultJson(r));
  return r.exitCode;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
