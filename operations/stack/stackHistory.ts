/**
 * A stack's update history as the rollback command reads it: numbered updates, the config each one ran with, the git
 * commit of its program, and whether another update holds the stack right now.
 *
 * What the CLI (3.274) records per update, as `pulumi stack history --json` shows it:
 *   version, kind (update | refresh | destroy | ...), result (succeeded | failed | in-progress), startTime, endTime,
 *   message (the commit subject when the project is in a git repo), resourceChanges, environment and config.
 *   - environment: exec.kind (cli | auto.local), git.head (the commit sha), git.headName (the branch; absent when
 *     detached), git.dirty ("true" when the working tree had uncommitted changes), git.author..., pulumi.version,
 *     pulumi.flag.*, pulumi.env.* (names only), runtime.*. No git.* keys when the project is not in a git repository.
 *   - config: every key of the stack config the update ran with. Plain values are `{ value, secret: false }`
 *     (structured ones also carry `objectValue`). Secret values are `{ secret: true }` with no value, unless
 *     `--show-secrets` is given: then the CLI decrypts them with the stack's CURRENT secrets manager (built from the
 *     stack settings: the passphrase provider's encryptionsalt + PULUMI_CONFIG_PASSPHRASE), one page at a time. A value
 *     encrypted under another key (the passphrase rotated since with `pulumi stack change-secrets-provider`, another
 *     provider) comes back as the string "ERROR_UNABLE_TO_DECRYPT"; when the current manager itself cannot be opened
 *     (wrong passphrase) the command fails: `error: decrypting secrets: incorrect passphrase`. The backend keeps the
 *     ciphertext of that time (the file backend: .pulumi/history/<project>/<stack>/*.history.json, the same ciphertext
 *     as the settings file held then, so an unchanged secret has the same ciphertext in both); only the key it was made
 *     with can read it, so the command refuses such a target rather than guess a value.
 *   - version: the file ("DIY") backend records 0 for every update. Versions are then positions, the oldest update
 *     being 1, as Pulumi Cloud numbers them; a backend that records real versions is taken at its word.
 *
 * Locks: the file backend holds `.pulumi/locks/organization/<project>/<stack>/<uuid>.json` ({pid, username, hostname,
 * timestamp}) while an update, refresh or destroy runs (a preview takes none). Other backends refuse a concurrent
 * update themselves; isLockedError() recognises both refusals.
 */
import { execFile, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { fileURLToPath } from "url";
import { promisify } from "util";
import type { ConfigMap, ConfigValue, LocalWorkspace, Stack, UpdateSummary } from "@pulumi/pulumi/automation";
import { GuardianRefusal } from "../../lib/errors";

/** A refusal: the command stops before writing anything, with this one message (exit code 2). */
export class RollbackRefusal extends GuardianRefusal {
  constructor(message: string) {
    super(message, "RollbackRefusal");
  }
}

export interface HistoryEntry {
  /** Version number: recorded by the backend, else the position from the oldest update (1-based). */
  version: number;
  /** Position in `pulumi stack history` (0 = newest), the page number minus one with a page size of 1. */
  index: number;
  kind: string;
  result: string;
  startTime: Date;
  endTime?: Date;
  message: string;
  /** git.head: the commit the program was run from, when the project was in a git repository. */
  commit?: string;
  /** git.dirty: the working tree had uncommitted changes, so the commit is not exactly the program that ran. */
  dirty: boolean;
  environment: Record<string, string>;
  /** The config as history lists it without secrets: secret keys have no value. */
  config: ConfigMap;
  secretKeys: string[];
}

/** Reads the whole history (newest first) without decrypting anything, and numbers it. */
export async function readHistory(stack: Stack): Promise<HistoryEntry[]> {
  const raw: UpdateSummary[] = await stack.history(undefined, undefined, false);
  const recorded = raw.some((u) => Number(u.version) > 0);
  return raw.map((u, i) => {
    const env = u.environment ?? {};
    const config = u.config ?? {};
    return {
      version: recorded ? Number(u.version) : raw.length - i,
      index: i,
      kind: String(u.kind),
      result: String(u.result),
      startTime: new Date(u.startTime),
      endTime: u.endTime ? new Date(u.endTime) : undefined,
      message: u.message ?? "",
      commit: env["git.head"] || undefined,
      dirty: env["git.dirty"] === "true",
      environment: env,
      config,
      secretKeys: Object.entries(config)
        .filter(([, v]) => v.secret)
        .map(([k]) => k)
        .sort(),
    };
  });
}

export function describeEntry(e: HistoryEntry): string {
  const model = e.config["guardian:creditModel"]?.value ?? "(unset: unified)";
  const commit = e.commit ? `commit ${e.commit.slice(0, 10)}${e.dirty ? " (+ uncommitted changes)" : ""}` : "no commit recorded";
  return `version ${e.version}: ${e.kind} ${e.result} at ${e.startTime.toISOString()}, ${commit}, guardian:creditModel ${model}`;
}

function firstLine(s: string): string {
  return (
    String(s)
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l && !/^(code|stdout|stderr):\s*$/.test(l) && !/^code: -?\d+$/.test(l)) ?? String(s)
  );
}

/**
 * The error of a failed CLI command, in one line. Automation API wraps stdout and stderr in a long message; the cause
 * of a failed update is a resource's diagnostic (stdout or stderr, in either order), and "error: update failed" only
 * says that it failed, so the first other `error:` line wins.
 */
export function cliError(e: unknown): string {
  const err = e as any;
  const text = `${err?.commandResult?.stderr ?? ""}\n${err?.commandResult?.stdout ?? ""}`;
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^error:/.test(l));
  // Skip the summary line and the by-products of an aborted run (the program's gRPC channel closing after the engine
  // stopped on a resource's error), so the resource's own error is the one reported.
  const byProduct =
    /^error: ((update|preview|refresh|destroy) failed|Error: Channel has been shut down|.*14 UNAVAILABLE|Running program .* failed with an unhandled exception:?)$/;
  const cause = lines.find((l) => !byProduct.test(l));
  return cause ?? lines[0] ?? firstLine(err?.message ?? String(e));
}

/** What `pulumi stack history --show-secrets` prints for a value the current secrets manager cannot decrypt. */
export const UNDECRYPTABLE = "ERROR_UNABLE_TO_DECRYPT";
const SET_BY_HAND =
  "The secrets provider or passphrase was changed after that update: set those values by hand (pulumi config set --secret) and run pulumi up.";

/**
 * The target's config with its secret values, decrypted by the stack's current secrets provider (the CLI, one page of
 * history). Refuses when they cannot be decrypted: the update ran under a key this stack no longer has.
 */
export async function configWithSecrets(stack: Stack, e: HistoryEntry): Promise<ConfigMap> {
  if (!e.secretKeys.length) return e.config;
  let page: UpdateSummary[];
  try {
    page = await stack.history(1, e.index + 1, true);
  } catch (err) {
    const why = cliError(err);
    if (/decrypt|passphrase|secrets manager|secrets provider/i.test(why)) {
      throw new RollbackRefusal(
        `rollback refused: the config of version ${e.version} holds secrets (${e.secretKeys.join(", ")}) that cannot be decrypted ` +
          `with the stack's current secrets provider (${why.replace(/^error:\s*/, "")}). ${SET_BY_HAND}`,
      );
    }
    throw err;
  }
  const u = page[0];
  if (!u || new Date(u.startTime).getTime() !== e.startTime.getTime()) {
    throw new Error(`stack history changed while it was being read (version ${e.version} moved); run the command again`);
  }
  const config = u.config ?? {};
  const unreadable = e.secretKeys.filter((k) => config[k]?.value === undefined || config[k]?.value === UNDECRYPTABLE);
  if (unreadable.length) {
    throw new RollbackRefusal(
      `rollback refused: the config of version ${e.version} holds secrets (${unreadable.join(", ")}) that cannot be decrypted ` +
        `with the stack's current secrets provider (they were encrypted under a key it does not have). ${SET_BY_HAND}`,
    );
  }
  return config;
}

/** Keys whose values differ between two configs (a secret is compared by value, never shown). */
export function configChanges(from: ConfigMap, to: ConfigMap): { key: string; from?: ConfigValue; to?: ConfigValue }[] {
  const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
  const norm = (v?: ConfigValue) => (v ? JSON.stringify([v.value ?? null, !!v.secret]) : "absent");
  return keys.filter((k) => norm(from[k]) !== norm(to[k])).map((k) => ({ key: k, from: from[k], to: to[k] }));
}

export function showValue(v?: ConfigValue): string {
  if (!v) return "(unset)";
  if (v.secret) return "[secret]";
  const s = String(v.value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

// ---------------------------------------------------------------------------------------------------------------
// Locks

export interface LockHolder {
  file: string;
  description: string;
}

/**
 * Locks held on the stack in a file backend (the lock files the CLI writes while an update runs). Empty for other
 * backends: they refuse a concurrent update themselves (see isLockedError).
 */
export async function stackLocks(stack: Stack): Promise<LockHolder[]> {
  const ws = stack.workspace;
  const url = (await ws.whoAmI()).url ?? process.env.PULUMI_BACKEND_URL ?? "";
  if (!url.startsWith("file:")) return [];
  const root = backendPath(url);
  const project = (await ws.projectSettings()).name;
  const short = stack.name.split("/").pop()!;
  const dirs = [path.join(root, ".pulumi", "locks", "organization", project, short), path.join(root, ".pulumi", "locks", short)];
  const holders: LockHolder[] = [];
  for (const dir of dirs) {
    let files: string[] = [];
    try {
      files = fs.readdirSync(dir).filter((f) => f.endsWith(".json"));
    } catch {
      continue;
    }
    for (const f of files) {
      const file = path.join(dir, f);
      let description = "an unreadable lock file";
      try {
        const l = JSON.parse(fs.readFileSync(file, "utf8"));
        description = `${l.username ?? "?"}@${l.hostname ?? "?"} (pid ${l.pid ?? "?"}) since ${l.timestamp ?? "?"}`;
      } catch {
        /* keep the generic description */
      }
      holders.push({ file, description });
    }
  }
  return holders;
}

function backendPath(url: string): string {
  const bare = url.replace(/\?.*$/, "");
  if (/^file:\/\/~/.test(bare)) return path.join(os.homedir(), bare.slice("file://~".length));
  if (bare.startsWith("file://")) return fileURLToPath(bare);
  return bare.slice("file:".length);
}

/** The CLI's refusal of an update on a stack that another update holds (file backend and Pulumi Cloud). */
export function isLockedError(e: unknown): boolean {
  const err = e as any;
  const text = `${err?.commandResult?.stderr ?? ""}\n${err?.message ?? ""}`;
  return err?.name === "ConcurrentUpdateError" || /currently locked by|Another update is currently in progress|conflict:.*in progress/i.test(text);
}

export function lockRefusal(stackName: string, holders: LockHolder[], detail?: string): RollbackRefusal {
  const who = holders.length ? holders.map((h) => h.description).join("; ") : (detail ?? "another update");
  return new RollbackRefusal(
    `rollback refused: stack ${stackName} is locked by another update (${who}). ` +
      `Wait for it to finish; if no update is running, \`pulumi cancel --stack ${stackName}\` removes a stale lock.`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Stack config files

/** Runs the workspace's CLI directly (Automation API's config methods have no --config-file). */
export async function pulumiCli(stack: Stack, args: string[], stdin?: string): Promise<string> {
  const ws = stack.workspace as LocalWorkspace;
  if (stdin === undefined) {
    const { stdout } = await promisify(execFile)(ws.pulumiCommand.command, [...args, "--non-interactive"], {
      cwd: ws.workDir,
      env: { ...process.env, ...ws.envVars },
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  }
  // A value that must not appear in any process's arguments (a secret) goes on standard input.
  return new Promise((resolve, reject) => {
    const child = spawn(ws.pulumiCommand.command, [...args, "--non-interactive"], { cwd: ws.workDir, env: { ...process.env, ...ws.envVars } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`pulumi ${args.slice(0, 2).join(" ")} failed (exit ${code}): ${err.trim()}`))));
    child.stdin.end(stdin);
  });
}

/** The stack's settings file: --config-file when given, else Pulumi.<stack>.yaml beside Pulumi.yaml. */
export function stackConfigFile(stack: Stack, configFile?: string): string {
  if (configFile) return path.resolve(configFile);
  const ws = stack.workspace as LocalWorkspace;
  return path.join(ws.workDir, `Pulumi.${stack.name.split("/").pop()}.yaml`);
}

/** The config in `file`, secrets decrypted. */
export async function readConfigFile(stack: Stack, file: string): Promise<ConfigMap> {
  return JSON.parse(await pulumiCli(stack, ["config", "--show-secrets", "--json", "--stack", stack.name, "--config-file", file])) as ConfigMap;
}

/**
 * Makes the config in `file` exactly `target`: removes the keys target does not have, sets the others (secrets
 * encrypted by the provider recorded in that file). A structured secret is written as its JSON text, secret (history
 * does not say which leaf was secret); the program reads structured config from JSON text as well.
 */
export async function writeConfigFile(stack: Stack, file: string, current: ConfigMap, target: ConfigMap): Promise<void> {
  const removed = Object.keys(current).filter((k) => !(k in target));
  if (removed.length) await pulumiCli(stack, ["config", "rm-all", "--stack", stack.name, "--config-file", file, ...removed]);
  // Plain values in one call; each secret in a call of its own with its value on standard input, never in the
  // arguments (which any local user reads in /proc/<pid>/cmdline).
  const values: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(target)) {
    if (v.secret) continue;
    values[k] =
      (v as any).objectValue === undefined ? { value: v.value, secret: false } : { value: v.value, objectValue: (v as any).objectValue, secret: false };
  }
  if (Object.keys(values).length) {
    await pulumiCli(stack, ["config", "set-all", "--stack", stack.name, "--config-file", file, "--json", JSON.stringify(values)]);
  }
  for (const [k, v] of Object.entries(target)) {
    if (v.secret) await pulumiCli(stack, ["config", "set", k, "--secret", "--stack", stack.name, "--config-file", file], String(v.value));
  }
}
