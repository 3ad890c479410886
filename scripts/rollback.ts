/**
 * One command back to an earlier update of the stack: its config and the program of its commit.
 *
 *   npm run rollback -- --stack <name> [--to <version>] [--yes | --dry-run] [--config-file F] [--cwd DIR] [--out report.md] [--json]
 *   (--help: the options; operations/shared/cli.ts)
 *
 * The command line only: the options (COMMAND), parseArgs/toOptions, --json printing, main. The operation, its steps,
 * refusals and exit codes are operations/rollback/ (rollbackCommand, the API tests call in-process); the terminal
 * question is its default confirmation, written to stderr here with --json.
 */
import * as path from "path";
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
} from "../operations/shared/cli";
import { PROJECT_ROOT } from "../operations/shared/pgserver";
import { type RollbackOptions, resultJson, rollbackCommand } from "../operations/rollback";

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

/** The command line as RollbackOptions (throws UsageError, operations/shared/cli.ts), or "help". */
export function parseArgs(argv: string[]): (RollbackOptions & { json: boolean }) | "help" {
  const p = parseCommand(COMMAND, argv);
  return p.help ? "help" : { ...toOptions(p.values), json: p.values.json };
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
