/**
 * Synthetic Guardian organizations, for rehearsals, tests and benchmarks: the command line of operations/seed (the
 * operation, its summary and the deterministic generator live there).
 *
 *   npm run seed -- --database-url URL --orgs N [--seed S] [--json]      (--help: the options; operations/shared/cli.ts)
 *
 * Creates the pre-Phase-3.5 schema where it is missing, then adds N organizations (`--orgs 0`: the schema only).
 * Progress goes to stderr; the summary (or, with --json, the result) to stdout.
 *
 * Exit codes: 0 done; 2 bad arguments or the database cannot be reached (one line on stderr, password redacted);
 * 1 any other failure.
 */
import { command, integer, jsonFlag, option, parseCommand, postgresUrl, printJson, runCommandLine, usageLine, UsageError } from "../operations/shared/cli";
import { redactSecrets, redactUrl } from "../lib/db";
import { MAX_ORGS, SeedConnectError, seed, summary } from "../operations/seed";

// ---------------------------------------------------------------------------------------------------------------
// CLI

export const COMMAND = command({
  name: "seed",
  summary: [
    "Creates the pre-Phase-3.5 Guardian schema where it is missing (nothing is changed where it exists, as on a real",
    "Supabase), then adds N synthetic organizations with a realistic plan mix, profiles and consumption history.",
    "Organization i of seed S is always the same organization: re-running adds nothing, a larger --orgs adds the tail.",
    "Progress goes to stderr; the summary (or, with --json, the result) to stdout.",
  ],
  options: {
    databaseUrl: option(postgresUrl(), { valueName: "URL", description: "the database to seed (postgres:// or postgresql://)", required: true, secret: true }),
    orgs: option(integer({ min: 0, max: MAX_ORGS }), { valueName: "N", description: "organizations to add (0: the schema only)", required: true }),
    seed: option(integer({ min: 0, max: 0xffffffff, what: "an integer from 0 to 4294967295" }), {
      valueName: "S",
      description: "which synthetic organizations",
      default: 1,
    }),
    json: jsonFlag("the result (orgs added and skipped, per plan, trials, profiles, logs, timing)"),
  },
  exitCodes: ["0 done", "2 bad arguments, or the database cannot be reached (one line, password redacted)", "1 any other failure"],
});

/** The usage line, as the errors print it. */
export const USAGE = usageLine(COMMAND);
export { UsageError };

export interface SeedArgs {
  databaseUrl: string;
  orgs: number;
  seed: number;
  /** Present (true) when --json was given. */
  json?: true;
}

/** Strict: every flag known, each given once with a value; returns "help" for --help; throws UsageError. */
export function parseArgs(argv: string[]): SeedArgs | "help" {
  const p = parseCommand(COMMAND, argv);
  if (p.help) return "help";
  const { databaseUrl, orgs, seed: seedNo, json } = p.values;
  return { databaseUrl, orgs, seed: seedNo, ...(json ? { json: true as const } : {}) };
}

export async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  const args: SeedArgs = { databaseUrl: cli.values.databaseUrl, orgs: cli.values.orgs, seed: cli.values.seed };
  const url = args.databaseUrl;
  const redact = (s: string) => redactSecrets(s, url);
  try {
    const result = await seed({ ...args, log: (line) => process.stderr.write(`${line}\n`) });
    if (cli.values.json) printJson({ database: redactUrl(url), ...result });
    else process.stdout.write(`${summary(result).join("\n")}\n`);
    return 0;
  } catch (e: any) {
    if (e instanceof SeedConnectError) {
      process.stderr.write(`seed: ${redact(e.message)}\n`);
      return 2;
    }
    process.stderr.write(`seed: failed: ${redact(String(e?.message ?? e))}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
