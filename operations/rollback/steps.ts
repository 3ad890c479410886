/**
 * The rollback's steps, in the order rollbackCommand (operations/rollback/index.ts) runs them. Each takes the context
 * the steps before it built (types.ts) and returns it extended, or a RollbackResult when the command ends there
 * (nothing to do, a dry run, declined). A refusal (nothing written, exit 2) is a thrown RollbackRefusal; a failure after
 * the stack config was written (exit 1) a thrown RollbackFailure. Temporary files and worktrees go on ctx.cleanups.
 *
 *   resolveTarget    the stack, its locks, its history, the target (pickTarget, checkTarget: no stack needed)
 *   readTarget       the target's config (secrets decrypted) and program (its commit, in a worktree if not HEAD)
 *   prepareSettings  the config now, a temporary settings file with the target's, the config keys that change
 *   readDatabase     the target's database and what will change there (database.ts dbFacts, describeChanges)
 *   preview          pulumi preview of the target's program and config
 *   stopIfDryRun     --dry-run ends here
 *   confirm          the operator's yes (or --yes)
 *   up               the target's config into the stack settings, pulumi up
 *   verifyUpdate     the database against the outputs and the model (database.ts verify)
 *   writeReport      the report, and the final result
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as readline from "readline";
import type { ConfigMap, PreviewResult, Stack, UpResult } from "@pulumi/pulumi/automation";
import { parseConfig, tlsSettings } from "../../lib/config";
import { redactSecrets, redactUrl, withClient } from "../../lib/db";
import { PROJECT_ROOT } from "../shared/pgserver";
import { openStack } from "../shared/workspace";
import { buildReport } from "../report";
import { addWorktree, type GitRepo, hasCommit, repoOf, type Worktree } from "../stack/programCheckout";
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
} from "../stack/stackHistory";
import { dbFacts, describeChanges, fmt, verify } from "./database";
import {
  type DatabaseContext,
  type DbFacts,
  type LineWriter,
  type PreviewContext,
  type ProgramContext,
  type RollbackContext,
  RollbackFailure,
  type RollbackOptions,
  type RollbackResult,
  type SettingsContext,
  type TargetContext,
  type UpContext,
  type VerifiedContext,
} from "./types";

/** The project directory, and the options no stack is needed to refuse. */
export function checkOptions(opts: RollbackOptions): string {
  const cwd = path.resolve(opts.cwd ?? PROJECT_ROOT);
  if (!fs.existsSync(path.join(cwd, "Pulumi.yaml"))) throw new RollbackRefusal(`rollback refused: ${cwd} is not a Pulumi project (no Pulumi.yaml)`);
  if (opts.to !== undefined && !(Number.isInteger(opts.to) && opts.to > 0))
    throw new RollbackRefusal(`rollback refused: --to expects a version number (a positive integer), got ${opts.to}`);
  return cwd;
}

/** The current version and the target in a stack's history (newest first): --to, else the last successful update before
 *  the current one. Refuses an empty history, a current update still in progress, a missing version. */
export function pickTarget(stackName: string, history: HistoryEntry[], to: number | undefined): { current: HistoryEntry; target: HistoryEntry } {
  if (!history.length) throw new RollbackRefusal(`rollback refused: stack ${stackName} has no update in its history`);
  const current = history[0];
  if (current.result === "in-progress") throw lockRefusal(stackName, [], `version ${current.version} is still in progress`);
  let target: HistoryEntry | undefined;
  if (to !== undefined) {
    target = history.find((h) => h.version === to);
    if (!target) {
      throw new RollbackRefusal(
        `rollback refused: stack ${stackName} has no version ${to} (its history holds versions ${history[history.length - 1].version} to ${current.version})`,
      );
    }
  } else {
    target = history.slice(1).find((h) => h.kind === "update" && h.result === "succeeded");
    if (!target) throw new RollbackRefusal(`rollback refused: stack ${stackName} has no successful update before its current version ${current.version}`);
  }
  return { current, target };
}

/** Only a successful update is a state to return to. */
export function checkTarget(target: HistoryEntry): void {
  if (target.kind !== "update")
    throw new RollbackRefusal(`rollback refused: version ${target.version} is a ${target.kind}, not an update: it has no program run to return to`);
  if (target.result !== "succeeded") {
    throw new RollbackRefusal(
      `rollback refused: version ${target.version} ${target.result === "failed" ? "failed" : `ended "${target.result}"`}: only a successful update is a state to return to`,
    );
  }
}

/** 1. The stack, its locks, its history, the target; "nothing to do" when the target is the current version. */
export async function resolveTarget(ctx: RollbackContext): Promise<TargetContext | RollbackResult> {
  const { opts, cwd, log, result } = ctx;
  let stack: Stack;
  try {
    stack = await openStack({ stackName: opts.stack, workDir: cwd, envVars: opts.envVars });
  } catch (e) {
    throw new RollbackRefusal(`rollback refused: cannot open stack "${opts.stack}": ${cliError(e).replace(/^error:\s*/, "")}`);
  }
  const locks = await stackLocks(stack);
  if (locks.length) throw lockRefusal(stack.name, locks);

  const history = await readHistory(stack);
  if (history.length) result.currentVersion = history[0].version;
  const { current, target } = pickTarget(stack.name, history, opts.to);
  result.targetVersion = target.version;
  log(`rollback: stack ${stack.name}, project ${cwd}`);
  log(`  current  ${describeEntry(current)}`);
  log(`  target   ${describeEntry(target)}`);
  checkTarget(target);
  if (target.version === current.version) {
    const message = `rollback: stack ${stack.name} is already at version ${target.version}: nothing to do (no preview, no update, nothing written)`;
    log(message);
    return { ...result, exitCode: 0, outcome: "nothing-to-do", message } as RollbackResult;
  }
  // Without --yes the operator confirms on a terminal; find out now, not after a preview.
  if (!opts.yes && !opts.dryRun && !opts.confirm && !process.stdin.isTTY) {
    throw new RollbackRefusal("rollback refused: no terminal to confirm on and --yes not given; nothing was written");
  }
  return Object.assign(ctx, { stack, current, target });
}

/** 2. The target's config (secrets decrypted, or a refusal) and its program: its commit, checked out if not HEAD. */
export async function readTarget(ctx: TargetContext): Promise<ProgramContext> {
  const { stack, target, cwd, result } = ctx;
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
  else if (target.dirty) targetNotes.push(dirtyTargetNote(target.version, target.commit));
  return Object.assign(ctx, { targetConfig, repo, useCommit, targetNotes });
}

/**
 * Why "uncommitted changes" matters for a rollback target, and why it may not: git counts any change, an untracked
 * Pulumi.<stack>.yaml (which `pulumi stack init` writes) too, and the rollback takes the stack's settings from the
 * update's recorded config, not from that file; the program it runs is the commit's.
 */
function dirtyTargetNote(version: number, commit: string): string {
  return (
    `version ${version} ran from commit ${commit.slice(0, 10)} with uncommitted changes (git counts any, an untracked ` +
    `Pulumi.<stack>.yaml too; commit it or ignore it to lose this note): the rollback runs the commit's program with the settings ` +
    `that update recorded, so only a change to the program itself would differ`
  );
}

/** 3. The config as it is now, and a temporary settings file with the target's (same secrets provider); prints the keys
 *  that change and the program. */
export async function prepareSettings(ctx: ProgramContext): Promise<SettingsContext> {
  const { opts, stack, log, cleanups, result, targetConfig, repo, useCommit } = ctx;
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
  for (const n of ctx.targetNotes) log(`  note     ${n}`);
  return Object.assign(ctx, { settingsFile, settingsExisted, currentConfig, previewSettings });
}

/** 4. What will change in the database: the target's model and database, read with the target's TLS settings. */
export async function readDatabase(ctx: SettingsContext): Promise<DatabaseContext> {
  const { target, targetConfig, cwd, log, result } = ctx;
  const model = String(targetConfig["guardian:creditModel"]?.value ?? "unified");
  const databaseUrl = targetConfig["guardian:databaseUrl"]?.value;
  if (!databaseUrl) throw new RollbackRefusal(`rollback refused: the config of version ${target.version} has no guardian:databaseUrl`);
  // The target's TLS settings (guardian:tls), as the program reads them, for the command's own queries.
  let tls: ReturnType<typeof tlsSettings>;
  try {
    const tlsRaw = targetConfig["guardian:tls"]?.value;
    tls = tlsSettings(parseConfig({ databaseUrl, ...(tlsRaw !== undefined ? { tls: tlsRaw } : {}) }), cwd);
  } catch (e) {
    throw new RollbackRefusal(`rollback refused: the config of version ${target.version}: ${redactSecrets(errorMessage(e), databaseUrl)}`);
  }
  let before: DbFacts;
  try {
    before = await withClient(databaseUrl, dbFacts, tls);
  } catch (e) {
    throw new RollbackRefusal(`rollback refused: cannot read the database of version ${target.version}: ${redactSecrets(errorMessage(e), databaseUrl)}`);
  }
  result.before = before;
  result.model = model;
  result.database = redactUrl(databaseUrl);
  const dbLines = describeChanges(before, model, redactUrl(databaseUrl));
  result.databaseChanges = dbLines.slice(1).map((l) => l.trim());
  for (const line of dbLines) log(line);
  return Object.assign(ctx, { model, databaseUrl, tls, before });
}

/** 5. Preview: the target's program (a temporary worktree for another commit) with the target's config. */
export async function preview(ctx: DatabaseContext): Promise<PreviewContext> {
  const { opts, stack, target, useCommit, repo, cwd, log, cleanups, result } = ctx;
  let programStack = stack;
  const programEnv: Record<string, string> = { ...(opts.envVars ?? {}) };
  if (useCommit) {
    let wt: Worktree;
    try {
      wt = addWorktree(repo as GitRepo, useCommit, path.join(cwd, "node_modules"));
    } catch (e) {
      const err = e as { stderr?: unknown; message?: unknown } | undefined;
      throw new RollbackRefusal(
        `rollback refused: cannot check out commit ${useCommit} in a temporary worktree: ${String(err?.stderr ?? err?.message ?? e).trim()}`,
      );
    }
    cleanups.push(() => wt.remove());
    // The backup export of a forward migration must outlive the worktree: keep it where the project keeps it.
    programEnv.GUARDIAN_EXPORT_ROOT ??= process.env.GUARDIAN_EXPORT_ROOT ?? path.resolve(cwd, exportDirOf(ctx.targetConfig));
    programStack = await openStack({ stackName: stack.name, workDir: wt.projectDir, envVars: programEnv });
    log(`  worktree ${wt.root}`);
  }
  const echo = lineWriter(log, "  | ");
  log(`--- pulumi preview: version ${target.version}'s config${useCommit ? ` and the program of ${useCommit.slice(0, 10)}` : ""} ---`);
  let pr: PreviewResult;
  try {
    pr = await programStack.preview({ configFile: ctx.previewSettings, color: "never", onOutput: echo.write });
  } catch (e) {
    echo.flush();
    if (isLockedError(e)) throw lockRefusal(stack.name, await stackLocks(stack), cliError(e));
    throw new RollbackRefusal(`rollback refused: the preview of version ${target.version} failed, nothing was changed: ${cliError(e)}`);
  }
  echo.flush();
  result.preview = pr;
  log(previewSummary(pr));
  return Object.assign(ctx, { programStack, echo, preview: pr });
}

/** The preview's one-line summary. */
export function previewSummary(pr: Pick<PreviewResult, "changeSummary">): string {
  const summary = Object.entries(pr.changeSummary ?? {}).filter(([k, v]) => k !== "same" && v > 0);
  return `--- preview: ${summary.length ? summary.map(([k, v]) => `${v} to ${k}`).join(", ") : "no resource changes"}; ${pr.changeSummary?.same ?? 0} unchanged ---`;
}

/** 6. A dry run stops here: the plan is printed, nothing was written (the preview used a temporary settings file and,
 *  for another commit, a temporary worktree; both are removed by the cleanups). */
export function stopIfDryRun(ctx: Pick<TargetContext, "opts" | "stack" | "current" | "target" | "log" | "result">): RollbackResult | undefined {
  const { opts, stack, current, target, log, result } = ctx;
  if (!opts.dryRun) return undefined;
  const again = [`--stack ${stack.name}`, `--to ${target.version}`];
  if (opts.configFile) again.push(`--config-file ${opts.configFile}`);
  if (opts.cwd && path.resolve(opts.cwd) !== PROJECT_ROOT) again.push(`--cwd ${opts.cwd}`);
  const message =
    `rollback: dry run: nothing was written (stack ${stack.name} stays at version ${current.version}). ` +
    `To apply this plan: npm run rollback -- ${again.join(" ")} --yes`;
  log(message);
  return { ...result, exitCode: 0, outcome: "dry-run", message } as RollbackResult;
}

/** 7. Confirmation (not asked with --yes): opts.confirm, else a question on the terminal. "declined" ends the command. */
export async function confirm(ctx: Pick<TargetContext, "opts" | "stack" | "current" | "target" | "log" | "result">): Promise<RollbackResult | undefined> {
  const { opts, stack, current, target, log, result } = ctx;
  if (opts.yes) return undefined;
  const question = `Update stack ${stack.name} to version ${target.version}'s config and program (pulumi up)? Type "yes" to continue: `;
  let ok: boolean;
  if (opts.confirm) ok = await opts.confirm(question);
  else ok = await askOnTerminal(question, opts.promptOutput);
  if (ok) return undefined;
  const message = `rollback: declined; nothing was written (stack ${stack.name} stays at version ${current.version})`;
  log(message);
  return { ...result, exitCode: 2, outcome: "declined", message } as RollbackResult;
}

/** The settings file as it is now, and a function that puts it back byte for byte (or removes it if it did not exist). */
export function settingsRestorer(settingsFile: string, existed = fs.existsSync(settingsFile)): () => void {
  const original = existed ? fs.readFileSync(settingsFile) : undefined;
  return () => (original ? fs.writeFileSync(settingsFile, original) : fs.rmSync(settingsFile, { force: true }));
}

/** 8. The update. The lock is checked again: the preview took time, and an up that finds the stack locked has not
 *  started (then the settings file is restored and it is a refusal). On a failed up the settings KEEP the target's values. */
export async function up(ctx: PreviewContext): Promise<UpContext> {
  const { opts, stack, current, target, settingsFile, programStack, echo, log, result } = ctx;
  const lateLocks = await stackLocks(stack);
  if (lateLocks.length) throw lockRefusal(stack.name, lateLocks);
  const restoreSettings = settingsRestorer(settingsFile, ctx.settingsExisted);
  try {
    await writeConfigFile(stack, settingsFile, ctx.currentConfig, ctx.targetConfig);
  } catch (e) {
    restoreSettings();
    throw e;
  }
  log(`rollback: stack config set to version ${target.version}'s values (${shortPath(settingsFile)})`);
  log(`--- pulumi up ---`);
  let upResult: UpResult;
  try {
    upResult = await programStack.up({ configFile: settingsFile, color: "never", onOutput: echo.write, message: `rollback to version ${target.version}` });
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
  result.up = upResult;
  const newVersion = (await readHistory(stack))[0]?.version;
  result.newVersion = newVersion;
  return Object.assign(ctx, { up: upResult, newVersion });
}

/** 9. Verification from the database: the facts after the update against its outputs and the target model. */
export async function verifyUpdate(ctx: UpContext): Promise<VerifiedContext> {
  const { databaseUrl, tls, model, newVersion, log, result } = ctx;
  const after = await withClient(databaseUrl, dbFacts, tls);
  result.after = after;
  const checks = verify(model, ctx.up.outputs, after);
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
  return Object.assign(ctx, { after, checks });
}

/** Where the report goes: --out (relative to the project), a directory (or a path ending with a slash) getting the
 *  default name <stack>-rollback-v<version>.md in it; without --out, .guardian/reports/ in the project. */
export function reportPath(cwd: string, stackName: string, newVersion: number | undefined, out: string | undefined): string {
  const reportName = `${stackName.split("/").pop()}-rollback-v${newVersion}.md`;
  let p = path.resolve(cwd, out ?? path.join(".guardian", "reports", reportName));
  if (out !== undefined && (/[\\/]$/.test(out) || isDirectory(p))) p = path.join(p, reportName);
  return p;
}

/** 10. The report (operations/report buildReport, + .svg), and the result of a rollback done. */
export async function writeReport(ctx: VerifiedContext): Promise<RollbackResult> {
  const { opts, stack, target, newVersion, settingsFile, after, log, result } = ctx;
  const out = reportPath(ctx.cwd, stack.name, newVersion, opts.out);
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
  } catch (e) {
    throw new RollbackFailure(
      `rollback failed: the update ran and was verified (version ${newVersion}), but the report could not be written: ${errorMessage(e)}`,
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
// Helpers

/** e.message, else e as a string (as `e?.message ?? e` printed it). */
function errorMessage(e: unknown): string {
  return String((e as { message?: unknown } | null | undefined)?.message ?? e);
}

/** A path relative to the current directory when it is inside it, else absolute. */
export function shortPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

/** Where the target's config keeps backup exports (guardian:backup exportDir), default .guardian/backups. */
export function exportDirOf(config: ConfigMap): string {
  try {
    const b = JSON.parse(String(config["guardian:backup"]?.value ?? "{}"));
    if (typeof b?.exportDir === "string" && b.exportDir) return b.exportDir;
  } catch {
    /* the default */
  }
  return path.join(".guardian", "backups");
}

/** Engine output arrives in chunks; print it line by line with a prefix. */
export function lineWriter(log: (s: string) => void, prefix: string): LineWriter {
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

/** The default confirmation of the API: a question on the terminal (stdin), written to output (default stdout). */
export function askOnTerminal(question: string, output: NodeJS.WritableStream = process.stdout): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      resolve(/^y(es)?$/i.test(answer.trim()));
    });
  });
}
