/**
 * Rehearsal: the whole migration on a scratch copy of the latest backup export before it runs on the real database.
 *
 *   npm run rehearse -- [--export DIR | --export-root DIR] [--target-url URL | --database NAME]
 *                       [--stack rehearsal] [--settings Pulumi.staging.yaml] [--restore-only] [--preview-only]
 *                       [--no-policy-pack] [--drop]          (--help: the options and which ones conflict; lib/cli.ts)
 *
 *   1. export    --export DIR, else the newest guardian_backup_* with a manifest.json under --export-root
 *                (default GUARDIAN_EXPORT_ROOT, else .guardian/backups, where `up` writes them)
 *   2. database  --target-url URL of an empty database (e.g. the container of rehearsal/docker.ts), else a new database
 *                --database NAME (default guardian_rehearsal_<utc stamp>) on the server lib/pgserver.ts finds
 *                (GUARDIAN_TEST_DATABASE_URL, else 127.0.0.1:5432, else an embedded Postgres; never DATABASE_URL)
 *   3. restore   lib/restoreExport.ts: sha256 of every file, baseline schema, COPY in foreign-key order, row counts and
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
 * restores real customer exports, and there is no default passphrase (lib/safeDefaults.ts rehearsalPassphrase).
 * Exit codes: 0 rehearsed; 2 refused (bad arguments, export or restore check failed); 1 the migration failed.
 */
import * as fs from "fs";
import * as path from "path";
import { command, existingDir, existingFile, flag, matching, option, postgresUrl, runCommandLine, text, type Values } from "../lib/cli";
import { redactUrl } from "../lib/db";
import { createDatabase, findPgServer, PROJECT_ROOT } from "../lib/pgserver";
import { rehearsalPassphrase } from "../lib/safeDefaults";
import { latestExport, restoreExport, RestoreError } from "../lib/restoreExport";
import { linkedProgramDir, openStack } from "../lib/workspace";
import { buildReport } from "../operations/report";

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
      description: "a new scratch database on the server lib/pgserver.ts finds",
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

type Args = Values<typeof COMMAND.options>;

/** The settings of another stack's file without its secrets (and their salt): the rehearsal sets its own. */
export function settingsWithoutSecrets(text: string): string {
  const out: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (/^encryptionsalt:/.test(l)) continue;
    if (/^(\s+)guardian:databaseUrl:/.test(l)) {
      const indent = /^(\s+)/.exec(l)![1].length;
      while (i + 1 < lines.length && lines[i + 1].trim() && /^(\s*)/.exec(lines[i + 1])![1].length > indent) i++;
      continue;
    }
    out.push(l);
  }
  return out.join("\n");
}

function step(n: number, title: string) {
  console.log(`\n=== rehearsal ${n}/5 ${title} ${"=".repeat(Math.max(3, 66 - title.length))}`);
}

async function main(a: Args) {
  // A real customer export is restored and its scratch URL kept encrypted: no default passphrase, refused up front.
  const passphrase = rehearsalPassphrase(process.env, !a.restoreOnly);
  if ("refused" in passphrase) {
    console.error(passphrase.refused);
    process.exit(2);
  }

  step(1, "export");
  const exportDir = a.export ? path.resolve(a.export) : latestExport(path.resolve(a.exportRoot));
  console.log(`export: ${exportDir}`);

  step(2, "scratch database");
  let url: string;
  if (a.targetUrl) {
    url = a.targetUrl;
  } else {
    const server = await findPgServer(console.log);
    url = await createDatabase(server, a.database);
  }
  const dbName = decodeURIComponent(new URL(url).pathname.slice(1)) || a.database;
  console.log(`scratch database: ${redactUrl(url)}`);
  const workDir = path.join(PROJECT_ROOT, ".guardian", "rehearsal", dbName);
  fs.mkdirSync(workDir, { recursive: true });

  step(3, "restore the export and check it against the manifest");
  const restored = await restoreExport(exportDir, url, { log: console.log });
  if (!restored.ok) {
    throw new RestoreError(
      `restore of ${restored.backupId} does not match its manifest; the rehearsal stops here`,
      Object.entries(restored.tables)
        .filter(([, t]) => !t.ok)
        .map(([k, t]) => `${k}: ${t.rows} rows / checksum ${t.checksum}, manifest ${t.expectedRows} / ${t.expectedChecksum}`),
    );
  }
  console.log(`restored ${restored.backupId} into ${restored.database} in ${(restored.durationMs / 1000).toFixed(1)} s; every table equals the manifest`);
  if (a.restoreOnly) return;

  step(4, `pulumi preview and up on stack ${a.stack}`);
  const env: Record<string, string> = {
    PULUMI_BACKEND_URL: process.env.PULUMI_BACKEND_URL ?? `file://${path.join(PROJECT_ROOT, ".guardian", "state")}`,
    ...passphrase.env,
    // The rehearsal's own backup of the scratch database goes beside it, not among the real exports.
    GUARDIAN_EXPORT_ROOT: path.join(workDir, "exports"),
  };
  if (env.PULUMI_BACKEND_URL.startsWith("file://")) fs.mkdirSync(env.PULUMI_BACKEND_URL.slice("file://".length), { recursive: true });
  // The rehearsal stack gets a project directory of its own (symlinks to this program), so its settings file
  // Pulumi.<stack>.yaml, with its encryption salt and the scratch database's URL (encrypted), never lands in the checkout.
  const programDir = linkedProgramDir(path.join(workDir, "program"));
  const settingsFile = path.join(programDir, `Pulumi.${a.stack}.yaml`);
  if (!fs.existsSync(settingsFile)) {
    fs.writeFileSync(
      settingsFile,
      `# Rehearsal settings, from ${path.relative(PROJECT_ROOT, a.settings)} (secrets dropped)\n${settingsWithoutSecrets(fs.readFileSync(a.settings, "utf8"))}`,
    );
  } else {
    // A rehearsal of this database ran before: its settings (salt, encrypted URL) are kept, not replaced by --settings.
    console.log(
      `settings: ${path.relative(process.cwd(), settingsFile)} from the earlier rehearsal of ${dbName} is kept (${path.relative(PROJECT_ROOT, a.settings)} is not read)`,
    );
  }
  const stack = await openStack({ stackName: a.stack, workDir: programDir, envVars: env, create: true });
  await stack.setConfig("guardian:databaseUrl", { value: url, secret: true });
  const policyPacks = !a.noPolicyPack ? [path.join(PROJECT_ROOT, "policies", "run-policy-pack")] : [];
  const print = (s: string) => process.stdout.write(s);
  const where = `(in ${path.relative(process.cwd(), programDir)})`;
  console.log(`$ pulumi preview --stack ${a.stack} --diff${!a.noPolicyPack ? " --policy-pack policies/run-policy-pack" : ""}   ${where}`);
  await stack.preview({ policyPacks, diff: true, onOutput: print });
  if (!a.previewOnly) {
    console.log(`$ pulumi up --stack ${a.stack} --yes${!a.noPolicyPack ? " --policy-pack policies/run-policy-pack" : ""}   ${where}`);
    await stack.up({ policyPacks, onOutput: print });
  }

  step(5, "report");
  const out = path.join(workDir, "report.md");
  const r = await buildReport({ stack, svgFileName: "report.svg" });
  fs.writeFileSync(out, r.markdown);
  fs.writeFileSync(path.join(workDir, "report.svg"), r.svg);
  console.log(`report: ${path.relative(process.cwd(), out)} (${r.figures.orgsByModel.multi ?? 0}/${r.figures.orgsTotal} orgs multi)`);

  if (a.drop && !a.targetUrl) {
    const server = await findPgServer();
    const { dropDatabase } = require("../lib/pgserver");
    await dropDatabase(server, dbName);
    console.log(`dropped the scratch database ${dbName} (the stack ${a.stack} still records it: \`pulumi stack rm ${a.stack} --force\` to forget it)`);
  }
}

if (require.main === module) {
  const cli = runCommandLine(COMMAND, process.argv.slice(2));
  if ("exitCode" in cli) process.exit(cli.exitCode);
  main(cli.values).catch((e) => {
    const refused = e instanceof RestoreError;
    console.error(
      refused
        ? e.message
        : `rehearsal failed: ${String(e?.message ?? e)
            .split("\n")
            .slice(0, 40)
            .join("\n")}`,
    );
    process.exit(refused ? 2 : 1);
  });
}
