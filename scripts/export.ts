/**
 * The program's SQL as a Supabase migration file: the command line of operations/export (exportSupabase, and what
 * goes in the file: operations/export/supabaseMigration.ts).
 *
 *   npm run export -- --supabase supabase/migrations [--stack NAME | --config-file FILE] [--database-url URL]
 *                     [--version YYYYMMDDHHMMSS] [--json]                      (--help: the options; operations/shared/cli.ts)
 *
 * Writes <dir>/<version>_guardian_credits.sql. Config: the stack settings file's guardian: keys (secrets are not
 * read), else the defaults. Shape: discovered read-only from --database-url, else guardian:schema of the config,
 * else the seed's. An export equal to the newest one in the folder writes nothing.
 */
import * as fs from "fs";
import * as path from "path";
import { command, existingFile, jsonFlag, matching, option, postgresUrl, printJson, runCommandLine, text, ValueError } from "../operations/shared/cli";
import { redactUrl } from "../lib/db";
import { PROJECT_ROOT } from "../operations/shared/pgserver";
import { ExportRefusal, exportSupabase } from "../operations/export";

/** A directory to write into: an existing one, or one to create (not a file). */
function directory(): (raw: string) => string {
  return (raw) => {
    if (!raw.trim()) throw new ValueError("expected a directory");
    if (fs.existsSync(raw) && !fs.statSync(raw).isDirectory()) throw new ValueError("expected a directory; this is a file");
    return raw;
  };
}

export const COMMAND = command({
  name: "export",
  summary: [
    "Writes the program's SQL (the multi model: credit schema, catalogue, audit, tenancy, functions, the backfill's",
    "function and trigger, margins), rendered for the database's shape, as ONE Supabase migration file",
    "<dir>/<version>_guardian_credits.sql. Not in it: backup, backfill run and verification (the data steps of pulumi up).",
    "The consumption-log index is a plain CREATE INDEX (Supabase runs a migration in a transaction).",
  ],
  options: {
    supabase: option(directory(), {
      valueName: "DIR",
      description: "the Supabase migrations folder (created if missing), e.g. supabase/migrations",
      required: true,
    }),
    stack: option(text("a stack name"), {
      valueName: "NAME",
      description: "read the config from Pulumi.NAME.yaml in the project (its guardian: keys; secrets are not read)",
    }),
    configFile: option(existingFile(), { valueName: "FILE", description: "read the config from this stack settings file" }),
    databaseUrl: option(postgresUrl(), {
      valueName: "URL",
      description: "discover the database's shape there (read-only, as go/no-go does); without it: guardian:schema of the config, else the seed's shape",
      secret: true,
    }),
    version: option(matching(/^\d{14}$/, "a migration version YYYYMMDDHHMMSS"), {
      valueName: "YYYYMMDDHHMMSS",
      description: "the file's version",
      defaultText: "now, UTC",
    }),
    json: jsonFlag("the file written (or found unchanged), its version, shape and sha256"),
  },
  conflicts: [{ options: ["stack", "configFile"], reason: "give one" }],
  alternatives: [["stack", "configFile"]],
  exitCodes: ["0 written, or unchanged", "2 bad arguments, a bad config, or the shape cannot be discovered (named)", "1 any other failure"],
  notes: [
    "Use it when the project also manages its schema with the Supabase CLI; migrate a database holding customer data",
    "with pulumi up (backup first), and keep this file in supabase/migrations so the history matches.",
  ],
});

export async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  const v = cli.values;
  const settingsFile = v.configFile ?? (v.stack ? path.join(PROJECT_ROOT, `Pulumi.${v.stack}.yaml`) : undefined);
  if (v.stack && !fs.existsSync(settingsFile!)) {
    process.stderr.write(`export: --stack: ${settingsFile} does not exist (usage: see --help)\n`);
    return 2;
  }
  const say = (l: string) => (v.json ? process.stderr : process.stdout).write(`${l}\n`);
  try {
    const r = await exportSupabase({ dir: v.supabase, settingsFile, databaseUrl: v.databaseUrl, version: v.version, log: say });
    if (v.json) printJson(r);
    return 0;
  } catch (e: any) {
    const msg = String(e?.message ?? e);
    const safe = v.databaseUrl ? msg.split(v.databaseUrl).join(redactUrl(v.databaseUrl)) : msg;
    process.stderr.write(e instanceof ExportRefusal || /cannot connect/.test(msg) ? `${safe}\n` : `export: failed: ${safe}\n`);
    return e instanceof ExportRefusal || /cannot connect/.test(msg) ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
