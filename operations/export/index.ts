/**
 * The program's SQL as a Supabase migration file: the operation (scripts/export.ts is its command line).
 *
 * Writes <dir>/<version>_guardian_credits.sql (./supabaseMigration.ts says what is in it, and what is not: the data
 * steps of `pulumi up`). Config: the stack settings file's guardian: keys (secrets are not read: the SQL needs none),
 * else the defaults. Shape: discovered read-only from a database URL as go/no-go does, else guardian:schema of the
 * config, else the seed's, and the file's header says which. An export equal to the newest one in the folder writes
 * nothing.
 */
import * as fs from "fs";
import * as path from "path";
import { type GuardianConfig, GuardianConfigError, parseConfig } from "../../lib/config";
import { redactUrl, withClient } from "../../lib/db";
import { GuardianRefusal } from "../../lib/errors";
import { PROJECT_ROOT } from "../shared/pgserver";
import { type DatabaseShape, discoverShape, SEED_SHAPE } from "../../lib/shape";
import { migrationVersion, supabaseMigration, writeSupabaseMigration } from "./supabaseMigration";

/** A refusal of the export (a bad config, a shape that cannot be used): one line, exit code 2. */
export class ExportRefusal extends GuardianRefusal {
  constructor(message: string) {
    super(message, "ExportRefusal");
  }
}

/** guardian: keys of a stack settings file, secrets left out (their values are ciphertext, and the SQL needs none). */
export function configFromSettings(file: string): Record<string, unknown> {
  const yaml = require("js-yaml") as typeof import("js-yaml");
  const doc = (yaml.load(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
  const isSecure = (v: unknown) => !!v && typeof v === "object" && !Array.isArray(v) && "secure" in (v as object) && Object.keys(v as object).length === 1;
  const strip = (v: unknown): unknown => {
    if (isSecure(v)) return undefined;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>)
          .map(([k, x]) => [k, strip(x)])
          .filter(([, x]) => x !== undefined),
      );
    }
    return v;
  };
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc.config ?? {})) {
    if (!k.startsWith("guardian:") || k === "guardian:databaseUrl") continue;
    const s = strip(v);
    if (s !== undefined) raw[k.slice("guardian:".length)] = s;
  }
  return raw;
}

/** The shape from guardian:schema where it says, the seed's where it does not. */
export function shapeFromConfig(config: GuardianConfig): DatabaseShape {
  const o = config.schema;
  const trial: DatabaseShape["trial"] = o.trialColumn === null ? { plans: o.trialPlans } : o.trialColumn ? { column: o.trialColumn } : SEED_SHAPE.trial;
  return { profileRoleColumn: o.profileRoleColumn ?? SEED_SHAPE.profileRoleColumn, trial };
}

export interface ExportOptions {
  dir: string;
  settingsFile?: string;
  databaseUrl?: string;
  version?: string;
  log?: (line: string) => void;
}

export interface ExportResult {
  file: string;
  written: boolean;
  version: string;
  shape: DatabaseShape;
  shapeSource: string;
  configSource: string;
  sqlSha256: string;
  parts: number;
}

export async function exportSupabase(o: ExportOptions): Promise<ExportResult> {
  const log = o.log ?? (() => undefined);
  const raw = o.settingsFile ? configFromSettings(o.settingsFile) : {};
  const configSource = o.settingsFile
    ? `the guardian: keys of ${path.relative(PROJECT_ROOT, path.resolve(o.settingsFile)) || o.settingsFile}`
    : "the defaults (no --stack)";
  let config: GuardianConfig;
  try {
    config = parseConfig({ ...raw, databaseUrl: "postgres://export@localhost/unused", creditModel: "multi" });
  } catch (e) {
    if (e instanceof GuardianConfigError) throw new ExportRefusal(`export refused: ${e.message}`);
    throw e;
  }
  let shape: DatabaseShape;
  let shapeSource: string;
  if (o.databaseUrl) {
    const found = await withClient(o.databaseUrl, (c) => discoverShape(c, config.schema));
    if (!found.shape) throw new ExportRefusal(`export refused: the shape of ${redactUrl(o.databaseUrl)} cannot be used:\n  - ${found.problems.join("\n  - ")}`);
    shape = found.shape;
    shapeSource = "discovered in the database, as go/no-go does";
  } else {
    shape = shapeFromConfig(config);
    const said = config.schema.profileRoleColumn !== undefined || config.schema.trialColumn !== undefined;
    shapeSource = said
      ? "guardian:schema of the config, the seed's where it says nothing; not discovered"
      : "the seed's, not discovered: give --database-url to discover it";
  }
  const m = supabaseMigration(config, shape, { shapeSource, configSource });
  const version = o.version ?? migrationVersion();
  const w = writeSupabaseMigration(o.dir, m.text, version);
  log(
    w.written
      ? `export: wrote ${path.relative(process.cwd(), w.file)} (${m.parts.length} parts, sql sha256 ${m.sqlSha256.slice(0, 12)})`
      : `export: unchanged: ${path.relative(process.cwd(), w.file)} already holds this export; nothing written`,
  );
  log(`export: shape ${shapeSource}; config ${configSource}`);
  if (w.notAfter) log(`export: warning: ${w.notAfter} is not older than version ${version}; Supabase applies migrations in version order`);
  return {
    file: w.file,
    written: w.written,
    version: path.basename(w.file).split("_")[0],
    shape,
    shapeSource,
    configSource,
    sqlSha256: m.sqlSha256,
    parts: m.parts.length,
  };
}
