/**
 * The real Pulumi engine for tests and the bench (the harness both share; neither imports the other): Automation API on a real project directory, a file backend in a temp dir, the
 * passphrase secrets provider, and the CLI that scripts/setup-pulumi.sh built (or found).
 *
 * Each test stack gets its own project directory: a temp folder whose entries are symlinks to this project's files
 * (so stack config files written by the engine stay out of the checkout and parallel tests do not collide).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LocalWorkspace, PulumiCommand, Stack, type ConfigMap, type EngineEvent } from "@pulumi/pulumi/automation";

export const PROJECT_ROOT = path.resolve(__dirname, "..");
/** The passphrase of every test stack (its secrets, and the key that signs its backup manifests). */
export const PASSPHRASE = "guardian-test-passphrase";

let cliRoot: string | undefined;
/** Runs the project's setup script once (it is cached and idempotent) and returns the CLI root. */
export function pulumiRoot(): string {
  if (!cliRoot) {
    cliRoot = execFileSync("bash", [path.join(PROJECT_ROOT, "scripts", "setup-pulumi.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
      .trim()
      .split("\n")
      .pop()!;
  }
  return cliRoot;
}

/** Files and folders a program needs; everything else (stack files, state, .git) stays out. */
const PROGRAM_ENTRIES = ["index.ts", "components", "providers", "lib", "sql", "policies", "package.json", "tsconfig.json", "node_modules"];

export interface TestStack {
  stack: Stack;
  dir: string;
  stateDir: string;
  /** Environment the CLI needs (backend, passphrase, PATH), for commands run outside Automation API. */
  env: Record<string, string>;
  setConfig(values: Record<string, unknown>, secretKeys?: string[]): Promise<void>;
  events: EngineEvent[];
  /** All diagnostic/progress text the engine reported (provider output included). */
  logText(): string;
  destroyWorkspace(): void;
}

export interface TestStackOptions {
  /** Extra project entries to link, or a different program directory (policy rule fixtures). */
  programDir?: string;
  stackName?: string;
  /** Reuse an existing state directory (e.g. to resume after a crash). */
  stateDir?: string;
  dir?: string;
  /** Contents for Pulumi.yaml (defaults to the project's). */
  pulumiYaml?: string;
}

export async function testStack(databaseUrl: string | undefined, config: Record<string, unknown> = {}, opts: TestStackOptions = {}): Promise<TestStack> {
  const root = pulumiRoot();
  const version = path.basename(root);
  const cmd = await PulumiCommand.get({ root, version: require("semver").parse(version), skipVersionCheck: false });
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "guardian-prog-"));
  if (!opts.dir) {
    const src = opts.programDir ?? PROJECT_ROOT;
    for (const e of PROGRAM_ENTRIES) {
      const from = fs.existsSync(path.join(src, e)) ? path.join(src, e) : path.join(PROJECT_ROOT, e);
      if (fs.existsSync(from)) fs.symlinkSync(from, path.join(dir, e));
    }
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), opts.pulumiYaml ?? fs.readFileSync(path.join(src, "Pulumi.yaml"), "utf8"));
  }
  const stateDir = opts.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "guardian-state-"));
  const env: Record<string, string> = {
    PULUMI_BACKEND_URL: `file://${stateDir}`,
    PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_NODEJS_TRANSPILE_ONLY: "true", // type checking is `npm run typecheck`'s job; it saves seconds per run
    PULUMI_HOME: process.env.PULUMI_HOME ?? path.join(os.homedir(), ".pulumi"),
    PATH: `${path.join(root, "bin")}:${process.env.PATH}`,
    GUARDIAN_EXPORT_ROOT: path.join(stateDir, "exports"),
  };
  const ws = await LocalWorkspace.create({ workDir: dir, pulumiCommand: cmd, envVars: env });
  const stack = await Stack.createOrSelect(opts.stackName ?? "test", ws);
  const events: EngineEvent[] = [];
  const t: TestStack = {
    stack,
    dir,
    stateDir,
    env,
    events,
    async setConfig(values, secretKeys = []) {
      const cm: ConfigMap = {};
      for (const [k, v] of Object.entries(values)) {
        if (v === undefined) continue;
        cm[`guardian:${k}`] = { value: typeof v === "string" ? v : JSON.stringify(v), secret: secretKeys.includes(k) };
      }
      await stack.setAllConfig(cm);
    },
    logText() {
      return events
        .map((e) => e.diagnosticEvent?.message ?? "")
        .filter(Boolean)
        .join("");
    },
    destroyWorkspace() {
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  if (databaseUrl) await t.setConfig({ databaseUrl }, ["databaseUrl"]);
  await t.setConfig(config);
  return t;
}

/** Collects engine events into the test stack (pass as `onEvent`). */
export function collect(t: TestStack) {
  return (e: EngineEvent) => t.events.push(e);
}
