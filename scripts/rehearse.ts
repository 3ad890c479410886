/**
 * Rehearsal: the whole migration on a scratch copy of the latest backup export before it runs on the real database.
 *
 *   npm run rehearse -- [--export DIR | --export-root DIR] [--target-url URL | --database NAME]
 *                       [--stack rehearsal] [--settings Pulumi.staging.yaml] [--restore-only] [--preview-only]
 *                       [--no-policy-pack] [--drop] [--allow-unsigned]          (--help: the options and which ones conflict; operations/shared/cli.ts)
 *
 *   1. export    --export DIR, else the newest guardian_backup_* with a manifest.json under --export-root
 *                (default GUARDIAN_EXPORT_ROOT, else .guardian/backups, where `up` writes them)
 *   2. database  --target-url URL of an empty database (e.g. the container of rehearsal/docker.ts), else a new database
 *                --database NAME (default guardian_rehearsal_<utc stamp>) on the server operations/shared/pgserver.ts finds
 *                (GUARDIAN_TEST_DATABASE_URL, else 127.0.0.1:5432, else an embedded Postgres; never DATABASE_URL)
 *   3. restore   operations/shared/restoreExport.ts: sha256 of every file, baseline schema, COPY in foreign-key order, row counts and
 *                checksums against the manifest; a difference stops the rehearsal here
 *   4. migrate   stack --stack (default "rehearsal") with the settings of --settings (default Pulumi.staging.yaml,
 *                secrets dropped), its guardian:databaseUrl set (as a secret) to the scratch database; `pulumi preview`
 *                then `pulumi up`, with the policy pack (policies/run-policy-pack) unless --no-policy-pack
 *   5. report    scripts/report.ts, written to .guardian/rehearsal/<database>/report.md (+ .svg)
 *
 * Everything it writes stays under .guardian/rehearsal/<database>/: the stack's project directory program/ (symlinks to
 * this program; its Pulumi.<stack>.yaml holds the settings and the encrypted scratch URL), the rehearsal's own backup
 * exports, the report. The checkout is left as it was. The state backend and passphrase are the environment's
 * (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE); without a backend, the project's own
 * (.guardian/state). Without a passphrase the rehearsal is refused before anything is read or written (exit 2): it
 * restores real customer exports, and there is no default passphrase (operations/shared/safeDefaults.ts rehearsalPassphrase).
 * Exit codes: 0 rehearsed; 2 refused (bad arguments, export or restore check failed); 1 the migration failed.
 *
 * The command line only (COMMAND, main); the operation and its steps are operations/rehearse.ts (rehearseCommand).
 */
import * as path from "path";
import { command, existingDir, existingFile, flag, matching, option, postgresUrl, runCommandLine, text, type Values } from "../operations/shared/cli";
import { PROJECT_ROOT } from "../operations/shared/pgserver";
import { type RehearseOptions, rehearseCommand } from "../operations/rehearse";

export const COMMAND = command({
  name: "rehearse",
  summary: [
    "The whole migration on a scratch copy of the latest backup export, before it runs on the real database: restore",
    "the export (checked against its manifest), then pulumi preview and up on a stack of its own with the policy pack,",
    "then the report, everything under .guardian/rehearsal/<database>/. The checkout is left as it was.",
  ],
  options: {
    export: option(existingDir("an export directory (guardian_backup_* with a manifest.json)"), { valueName: "DIR", description: "the export to restore" }),
    exportRoot: option(existingDir(), {
      valueName: "DIR",
      description: "where exports are: the newest guardian_backup_* with a manifest.json is restored",
      default: () => process.env.GUARDIAN_EXPORT_ROOT ?? path.join(PROJECT_ROOT, ".guardian", "backups"),
      defaultText: "GUARDIAN_EXPORT_ROOT, else .guardian/backups",
    }),
    targetUrl: option(postgresUrl(), {
      valueName: "URL",
      description: "an empty database to restore into (e.g. the container of rehearsal/docker.ts)",
      secret: true,
    }),
    database: option(matching(/^[a-z_][a-z0-9_]{0,62}$/, "a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)"), {
      valueName: "NAME",
      description: "a new scratch database on the server operations/shared/pgserver.ts finds",
      default: () => `guardian_rehearsal_${new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14)}`,
      defaultText: "guardian_rehearsal_<utc stamp>",
    }),
    stack: option(text("a stack name"), { valueName: "NAME", description: "the rehearsal's stack", default: "rehearsal" }),
    settings: option(existingFile(), {
      valueName: "FILE",
      description: "the stack settings to rehearse (secrets dropped; the database URL is the scratch one)",
      default: () => path.join(PROJECT_ROOT, "Pulumi.staging.yaml"),
      defaultText: "Pulumi.staging.yaml",
    }),
    restoreOnly: flag("stop after the restore and its check"),
    allowUnsigned: flag("restore an export without manifest.sig (made by a stack without a passphrase)"),
    previewOnly: flag("pulumi preview, no up"),
    noPolicyPack: flag("preview and up without the policy pack (policies/run-policy-pack)"),
    drop: flag("drop the scratch database at the end"),
  },
  alternatives: [
    ["export", "exportRoot"],
    ["targetUrl", "database"],
  ],
  conflicts: [
    { options: ["export", "exportRoot"], reason: "give one" },
    { options: ["targetUrl", "database"], reason: "give one" },
    { options: ["restoreOnly", "previewOnly"], reason: "--restore-only stops before the preview" },
    { options: ["restoreOnly", "noPolicyPack"], reason: "--restore-only runs no preview and no up" },
    { options: ["restoreOnly", "stack"], reason: "--restore-only runs no stack" },
    { options: ["restoreOnly", "settings"], reason: "--restore-only runs no stack" },
    { options: ["restoreOnly", "drop"], reason: "--restore-only keeps the restored database to look at" },
    { options: ["targetUrl", "drop"], reason: "the rehearsal drops only a database it created (--database)" },
  ],
  exitCodes: ["0 rehearsed", "2 refused: bad arguments, or the export or its restore check failed", "1 the migration failed"],
  notes: ["The state backend and passphrase are the environment's (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE); without them, the demo's (.guardian/state)."],
});

/** The command line's values as the operation's options. */
export function toOptions(v: Values<typeof COMMAND.options>): RehearseOptions {
  return { ...v };
}

export async function main(argv: string[]): Promise<number> {
  const cli = runCommandLine(COMMAND, argv);
  if ("exitCode" in cli) return cli.exitCode;
  return rehearseCommand(toOptions(cli.values));
}

if (require.main === module) {
  // Exit explicitly only on a refusal or a failure: a rehearsal that ran ends when its work is done.
  main(process.argv.slice(2)).then((code) => {
    if (code !== 0) process.exit(code);
  });
}
