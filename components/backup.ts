import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { redactUrl } from "../lib/db";
import { loadSql } from "../lib/sql";
import { BackupSnapshot } from "../providers/backup";
import { BackupRestoreCheck } from "../providers/restoreCheck";
import { connection, type GuardianContext } from "./sqlFile";

/** The tables a backup holds, with their primary keys. */
export const BACKUP_TABLES = [
  { name: "organizations", key: "id" },
  { name: "organization_credits", key: "organization_id" },
  { name: "credit_actions", key: "action_type" },
  { name: "credit_consumption_logs", key: "id" },
];

export interface BackupArgs {
  ctx: GuardianContext;
  /** Plain connection string, only used to record a redacted label in the manifest. */
  databaseUrlPlain: string;
  /** Absolute folder for exports. Default: guardian:backup.exportDir resolved against the project root. */
  exportRoot: string;
}

/**
 * Backup of the credit tables: a snapshot schema guardian_backup_*, an on-disk export with a manifest, and a restore
 * check that must pass before anything that depends on this component runs. Retained on delete, always.
 */
export class Backup extends pulumi.ComponentResource {
  /** The snapshot and its export; its outputs (providers/backup.ts BACKUP_OUTPUTS) are the component's. */
  public readonly snapshot: BackupSnapshot;
  /** The resource that proves the restore; later steps depend on it. */
  public readonly restoreCheck: BackupRestoreCheck;

  constructor(name: string, args: BackupArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Backup", name, {}, opts);
    this.snapshot = new BackupSnapshot(
      `${name}-snapshot`,
      {
        ...connection(args.ctx),
        exportRoot: path.resolve(args.exportRoot),
        tables: BACKUP_TABLES,
        databaseLabel: redactUrl(args.databaseUrlPlain),
        bootstrapSql: loadSql("schema/01_guardian_schema.sql").text,
      },
      { parent: this },
    );
    this.restoreCheck = new BackupRestoreCheck(
      `${name}-restore-check`,
      { ...connection(args.ctx), backupId: this.snapshot.backupId, manifestPath: this.snapshot.manifestPath },
      { parent: this, dependsOn: [this.snapshot] },
    );
    this.registerOutputs();
  }
}
