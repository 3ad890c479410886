/**
 * The rollback operation's options, result and the context its steps share (operations/rollback/steps.ts): each step
 * takes the context the steps before it built and returns it extended, so a step's inputs are in its type.
 */
import type { ConfigMap, PreviewResult, Stack, UpResult } from "@pulumi/pulumi/automation";
import type { TlsSettings } from "../../lib/pgConnection";
import type { HistoryEntry } from "../stack/stackHistory";
import type { GitRepo } from "../stack/programCheckout";

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

/** A failure after the stack config was written (exit code 1), with what the result knew by then. */
export class RollbackFailure extends Error {
  constructor(
    message: string,
    readonly partial: Partial<RollbackResult> = {},
  ) {
    super(message);
    this.name = "RollbackFailure";
  }
}

/** Engine output printed line by line (steps.ts lineWriter). */
export interface LineWriter {
  write: (chunk: string) => void;
  flush: () => void;
}

/** What every step has: the options, where lines go, the cleanups run at the end, the result so far. */
export interface RollbackContext {
  opts: RollbackOptions;
  log: (line: string) => void;
  cleanups: (() => void)[];
  result: Partial<RollbackResult>;
  /** The project directory (opts.cwd resolved). */
  cwd: string;
}

/** After resolveTarget: the stack, its current version and the target. */
export interface TargetContext extends RollbackContext {
  stack: Stack;
  current: HistoryEntry;
  target: HistoryEntry;
}

/** After readTarget: the target's config (secrets decrypted) and the program to run (a commit other than HEAD, or none). */
export interface ProgramContext extends TargetContext {
  targetConfig: ConfigMap;
  repo?: GitRepo;
  useCommit?: string;
  targetNotes: string[];
}

/** After prepareSettings: the stack settings file, the config now, and the temporary settings file of the preview. */
export interface SettingsContext extends ProgramContext {
  settingsFile: string;
  settingsExisted: boolean;
  currentConfig: ConfigMap;
  previewSettings: string;
}

/** After readDatabase: the target's model and database, and the facts there before the update. */
export interface DatabaseContext extends SettingsContext {
  model: string;
  databaseUrl: string;
  tls: TlsSettings | undefined;
  before: DbFacts;
}

/** After preview: the stack that runs the target's program (in a worktree for another commit) and its preview. */
export interface PreviewContext extends DatabaseContext {
  programStack: Stack;
  echo: LineWriter;
  preview: PreviewResult;
}

/** After up: the update's result and the version it was recorded as. */
export interface UpContext extends PreviewContext {
  up: UpResult;
  newVersion: number | undefined;
}

/** After verifyUpdate: the facts in the database after the update and the checks, all agreeing. */
export interface VerifiedContext extends UpContext {
  after: DbFacts;
  checks: FactCheck[];
}
