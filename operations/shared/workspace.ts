/**
 * The Pulumi engine for the operator scripts (report, rehearsal): Automation API's LocalWorkspace on a project
 * directory, driving the CLI that scripts/setup-pulumi.sh installed (or found). The backend and the passphrase come
 * from the environment as for `pulumi` itself (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE[_FILE]).
 */
import { execFile, execFileSync } from "child_process";
import * as path from "path";
import { promisify } from "util";
import { LocalWorkspace, PulumiCommand, Stack, type ConfigMap } from "@pulumi/pulumi/automation";
import { PROJECT_ROOT } from "./pgserver";

let cliRoot: string | undefined;

/** Root of the CLI (…/versions/<v>, holding bin/pulumi); runs the idempotent setup script once per process. */
export function pulumiCliRoot(): string {
  if (!cliRoot) {
    const out = execFileSync("bash", [path.join(PROJECT_ROOT, "scripts", "setup-pulumi.sh")], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    cliRoot = out.trim().split("\n").pop()!;
  }
  return cliRoot;
}

export interface OpenStackOptions {
  stackName: string;
  /** Project directory (default: this project). */
  workDir?: string;
  /** Extra environment for the CLI (backend URL, passphrase...), added to process.env. */
  envVars?: Record<string, string>;
  /** Create the stack when it does not exist (default: select only, and fail if it is missing). */
  create?: boolean;
}

export async function openStack(opts: OpenStackOptions): Promise<Stack> {
  const root = pulumiCliRoot();
  const semver = require("semver");
  const cmd = await PulumiCommand.get({ root, version: semver.parse(path.basename(root)), skipVersionCheck: false });
  const ws = await LocalWorkspace.create({
    workDir: opts.workDir ?? PROJECT_ROOT,
    pulumiCommand: cmd,
    envVars: { PULUMI_SKIP_UPDATE_CHECK: "true", ...opts.envVars },
  });
  return opts.create ? Stack.createOrSelect(opts.stackName, ws) : Stack.select(opts.stackName, ws);
}

/**
 * The stack's configuration, secrets decrypted. With a config file (`--config-file`, as the demo keeps its stack
 * settings outside the checkout) the CLI is asked directly: Automation API's getAllConfig has no such option.
 */
export async function readStackConfig(stack: Stack, configFile?: string): Promise<ConfigMap> {
  if (!configFile) return stack.getAllConfig();
  const ws = stack.workspace as LocalWorkspace;
  const args = ["config", "--show-secrets", "--json", "--stack", stack.name, "--config-file", path.resolve(configFile), "--non-interactive"];
  const { stdout } = await promisify(execFile)(ws.pulumiCommand.command, args, {
    cwd: ws.workDir,
    env: { ...process.env, ...ws.envVars },
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout) as ConfigMap;
}

/** The `guardian:` keys of a ConfigMap, without the prefix, as parseConfig expects them. */
export function guardianKeys(config: ConfigMap): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) if (k.startsWith("guardian:")) raw[k.slice("guardian:".length)] = v.value;
  return raw;
}

/** Files and folders the program needs (as harness/stack.ts links them). */
const PROGRAM_ENTRIES = ["index.ts", "components", "providers", "lib", "sql", "policies", "package.json", "tsconfig.json", "node_modules"];

/**
 * A project directory of its own for a throw-away stack (the rehearsal): symlinks to this project's program and a copy
 * of Pulumi.yaml, so the stack's settings file (Pulumi.<stack>.yaml, with its encryption salt) lives there and never in
 * the checkout. Idempotent.
 */
export function linkedProgramDir(dir: string): string {
  const fs = require("fs") as typeof import("fs");
  fs.mkdirSync(dir, { recursive: true });
  for (const e of PROGRAM_ENTRIES) {
    const to = path.join(dir, e);
    if (!fs.existsSync(to) && fs.existsSync(path.join(PROJECT_ROOT, e))) fs.symlinkSync(path.join(PROJECT_ROOT, e), to);
  }
  fs.copyFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
  return dir;
}
