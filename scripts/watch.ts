/**
 * The plan's rollback triggers, automated (contract: "Rollback triggers"):
 *
 *   npm run watch -- --stack <name> --minutes <m> [--auto-rollback] [--json] [--config-file F] [--cwd DIR]
 *
 * The command line only; the watch, its readings, triggers and exit codes are operations/watch (watchCommand, the API
 * tests call in-process).
 */
import { command, existingDir, flag, jsonFlag, option, outputPath, positiveNumber, printJson, runCommandLine, text } from "../operations/shared/cli";
import { watchCommand } from "../operations/watch";

export const COMMAND = command({
  name: "watch",
  summary: [
    "Watches a stack that is multi for a window, from the database itself, and stops at the first rollback trigger:",
    "function failures above guardian:watch.failureShare (10%), latency above guardian:watch.latencyFactor (1.5x) the",
    "baseline recorded before the switch, or any invariant broken. One reading every guardian:watch.intervalSeconds.",
    "With --auto-rollback a fired trigger rolls the stack back at once (guardian:creditModel unified, pulumi up).",
    "The backend and passphrase come from the environment (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE[_FILE]).",
  ],
  options: {
    stack: option(text("a stack name"), { valueName: "NAME", description: "the stack to watch", required: true }),
    minutes: option(positiveNumber("a number of minutes above 0 (decimals allowed)"), {
      valueName: "M",
      description: "how long to watch",
      required: true,
    }),
    autoRollback: flag("roll back at once when a trigger fires"),
    configFile: option(outputPath(), {
      valueName: "FILE",
      description: "stack settings file, as pulumi --config-file",
      defaultText: "Pulumi.<stack>.yaml in the project",
    }),
    cwd: option(existingDir(), { valueName: "DIR", description: "the project directory", defaultText: "this checkout" }),
    json: jsonFlag("one object per reading, and a final one"),
  },
  exitCodes: [
    "0 the window passed",
    "3 a trigger fired and nothing was rolled back (the message says which, with the figures and the command to run)",
    "4 a trigger fired and the rollback succeeded",
    "5 a trigger fired and the rollback failed",
    "1 the watch itself failed mid-window (connection lost, interrupted)",
    "2 refused, nothing done (not multi, no baseline, bad flags)",
  ],
});

export async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  const v = cli.values;
  const r = await watchCommand({
    stack: v.stack,
    minutes: v.minutes,
    autoRollback: v.autoRollback,
    ...(v.configFile !== undefined ? { configFile: v.configFile } : {}),
    ...(v.cwd !== undefined ? { cwd: v.cwd } : {}),
    ...(v.json ? { log: (s: string) => console.error(s), json: (d: unknown) => printJson(d) } : {}),
  });
  return r.exitCode;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
