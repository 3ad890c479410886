/**
 * The demo: what an engineer does on a production night, on a throw-away database.
 *
 *   Postgres (GUARDIAN_TEST_DATABASE_URL, else 127.0.0.1:5432, else an embedded server; never DATABASE_URL, and only a
 *   local server unless GUARDIAN_TEST_ALLOW_REMOTE=1) -> seed -> pulumi preview -> pulumi up
 *   -> report -> rollback (creditModel=unified, pulumi up) -> report
 *
 * Uses the real `pulumi` CLI on the project directory, stack `dev`, the project's own file backend, which it sets itself
 * (PULUMI_BACKEND_URL=file://<project>/.guardian/state; any backend outside <project>/.guardian is refused, exit 2:
 * the demo removes and re-creates stack dev there, operations/shared/safeDefaults.ts), and a copy
 * of Pulumi.dev.yaml under .guardian/demo (so the checkout stays clean).
 *
 *   npm run demo -- [--orgs N]          (--help: the options; operations/shared/cli.ts)
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { command, integer, option, runCommandLine } from "../operations/shared/cli";
import { redactUrl } from "../lib/db";
import { createDatabase, findPgServer, PROJECT_ROOT } from "../operations/shared/pgserver";
import { demoBackend } from "../operations/shared/safeDefaults";
import { MAX_ORGS, seed } from "../operations/seed";

export const COMMAND = command({
  name: "demo",
  summary: [
    "What an engineer does on a production night, on a throw-away database: Postgres, seed, pulumi preview, pulumi up,",
    "report, rollback (creditModel unified, pulumi up), report. Stack dev on a file backend under .guardian/state, its",
    "config a copy of Pulumi.dev.yaml under .guardian/demo. npm run demo runs scripts/setup.sh first.",
  ],
  options: {
    orgs: option(integer({ min: 1, max: MAX_ORGS }), { valueName: "N", description: "organizations to seed", default: 10_000 }),
  },
  exitCodes: ["0 done", "2 bad arguments", "1 a step failed (named)"],
});

function step(n: number, title: string) {
  console.log(`\n=== ${n}/6 ${title} ${"=".repeat(Math.max(3, 70 - title.length))}`);
}

async function main(orgs: number) {
  // Before anything else: the demo runs `pulumi stack rm dev --force`, so only on the project's own backend.
  const backend = demoBackend(process.env, PROJECT_ROOT);
  if ("refused" in backend) {
    console.error(backend.refused);
    process.exit(2);
  }
  const cliRoot = spawnSync("bash", [path.join(PROJECT_ROOT, "scripts/setup-pulumi.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] })
    .stdout.trim()
    .split("\n")
    .pop()!;
  const demoDir = path.join(PROJECT_ROOT, ".guardian", "demo");
  const stateDir = path.join(PROJECT_ROOT, ".guardian", "state");
  fs.mkdirSync(demoDir, { recursive: true });
  fs.mkdirSync(stateDir, { recursive: true });
  const configFile = path.join(demoDir, "Pulumi.dev.yaml");
  fs.copyFileSync(path.join(PROJECT_ROOT, "Pulumi.dev.yaml"), configFile);
  const env = {
    ...process.env,
    PATH: `${path.join(cliRoot, "bin")}:${process.env.PATH}`,
    PULUMI_BACKEND_URL: backend.url,
    PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "guardian-demo-passphrase",
    PULUMI_SKIP_UPDATE_CHECK: "true",
  };
  /** Runs the CLI; a secret goes on its standard input, never in its arguments (another local user reads those). */
  const pulumi = (args: string[], secretInput?: string) => {
    console.log(`\n$ pulumi ${args.join(" ")}${secretInput === undefined ? "" : " < (the value, on standard input)"}`);
    const r = spawnSync("pulumi", [...args, "--config-file", configFile, ...(secretInput === undefined ? [] : ["--non-interactive"])], {
      cwd: PROJECT_ROOT,
      env,
      stdio: secretInput === undefined ? "inherit" : ["pipe", "inherit", "inherit"],
      ...(secretInput === undefined ? {} : { input: secretInput }),
    });
    if (r.status !== 0) throw new Error(`pulumi ${args[0]} failed (exit ${r.status})`);
  };
  const report = (label: string) => {
    if (!fs.existsSync(path.join(PROJECT_ROOT, "scripts/report.ts"))) return;
    const out = path.join(demoDir, `report-${label}.md`);
    const r = spawnSync("node", ["-r", "ts-node/register/transpile-only", "scripts/report.ts", "--stack", "dev", "--config-file", configFile, "--out", out], {
      cwd: PROJECT_ROOT,
      env,
      stdio: "inherit",
    });
    if (r.status !== 0) throw new Error("report failed");
    console.log(`report written: ${path.relative(process.cwd(), out)}`);
  };

  step(1, "Postgres");
  const server = await findPgServer(console.log);
  const url = await createDatabase(server, "guardian_demo");
  console.log(`demo database: ${redactUrl(url)}`);

  step(2, `Seed the pre-Phase-3.5 Guardian schema with ${orgs.toLocaleString("en-US")} organizations`);
  await seed({ databaseUrl: url, orgs, seed: 42, log: (s: string) => console.log(s) });

  step(3, "pulumi preview (creditModel = multi)");
  // A fresh demo stack each run (the demo database was just recreated). Creating it makes the CLI write the stack's
  // passphrase salt into Pulumi.dev.yaml; the salt moves to the demo's config copy and the checkout stays clean.
  const devYaml = path.join(PROJECT_ROOT, "Pulumi.dev.yaml");
  const original = fs.readFileSync(devYaml, "utf8");
  spawnSync("pulumi", ["stack", "rm", "dev", "--yes", "--force", "--preserve-config"], { cwd: PROJECT_ROOT, env, stdio: "ignore" });
  const created = spawnSync("pulumi", ["stack", "select", "dev", "--create"], { cwd: PROJECT_ROOT, env, stdio: "inherit" });
  if (created.status !== 0) throw new Error("pulumi stack select dev --create failed");
  const salt = fs.readFileSync(devYaml, "utf8").match(/^encryptionsalt: .*$/m)?.[0];
  fs.writeFileSync(devYaml, original);
  if (salt) fs.appendFileSync(configFile, `${salt}\n`);
  pulumi(["config", "set", "--secret", "guardian:databaseUrl"], url);
  pulumi(["config", "set", "guardian:creditModel", "multi"]);
  pulumi(["preview", "--stack", "dev", "--diff"]);

  step(4, "pulumi up (backup, schema, functions, backfill, verification)");
  pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"]);
  report("after-up");

  step(5, "rollback: creditModel = unified, pulumi up");
  pulumi(["config", "set", "guardian:creditModel", "unified"]);
  pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"]);

  step(6, "report after rollback");
  report("after-rollback");
  console.log(`\nDone. The stack state is in ${path.relative(process.cwd(), stateDir)}; the CLI: export PATH="${path.join(cliRoot, "bin")}:$PATH"`);
}

if (require.main === module) {
  const cli = runCommandLine(COMMAND, process.argv.slice(2));
  if ("exitCode" in cli) process.exit(cli.exitCode);
  // scripts/demo.sh checks the arguments before the setup: valid, nothing else to do yet.
  if (process.env.GUARDIAN_DEMO_ARGS_ONLY === "1") process.exit(0);
  main(cli.values.orgs).catch((e) => {
    console.error(`demo failed: ${e.message}`);
    process.exit(1);
  });
}
