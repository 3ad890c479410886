/**
 * guardian-credits: Phase 3.5 of the Guardian AI CRM as a Pulumi program.
 *
 * Composition root. Config is read once and validated (every bad key reported at once), the go/no-go gates are
 * evaluated against the live database before any resource is declared, and the components are wired in the order
 * that is safe while applications keep calling consume_credits_rpc: lib/applyOrder.ts, the one ordered plan, gives
 * each component its dependsOn, so the engine enforces it. ModelSwitch records the model and the ordered steps of
 * moving into it, so a switch previews as one change.
 */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { foreignConfigKeyProblems, type GuardianConfig, GuardianConfigError, parseConfig, tlsSettings } from "./lib/config";
import { withClient } from "./lib/db";
import { GuardianRefusal, withoutFrames } from "./lib/errors";
import { resolveTls, TlsConfigError, type TlsSettings } from "./lib/pgConnection";
import { describeShape } from "./lib/shape";
import { backfillPlan, describePlan } from "./lib/backfillPlan";
import { preflight } from "./lib/preflight";
import { type Step, stepAfter } from "./lib/applyOrder";
import { loadSqlParser } from "./lib/pgsql";
import { discoveryLines, rollbackPreview } from "./lib/previewNotes";
import { Audit } from "./components/audit";
import { Backfill } from "./components/backfill";
import { Backup } from "./components/backup";
import { Catalogue } from "./components/catalogue";
import { CreditFunctions } from "./components/creditFunctions";
import { CreditSchema } from "./components/creditSchema";
import { Margins } from "./components/margins";
import { ModelSwitch } from "./components/modelSwitch";
import { Rollback } from "./components/rollback";
import type { GuardianContext } from "./components/sqlFile";
import { TenantPolicies } from "./components/tenantPolicies";
import { Verification } from "./components/verification";

/**
 * The stack's config, validated, with every problem at once: keys the program would never read (the project's own
 * namespace, which `pulumi config set <key>` writes without a namespace; a misspelt namespace; an unknown guardian: key),
 * each with the key meant; bad values; a connection string not stored as a secret; TLS settings that contradict the
 * connection string or a root certificate that cannot be read.
 */
function readConfig(): { config: GuardianConfig; tls?: TlsSettings; tlsSecret: boolean } {
  const all = pulumi.runtime.allConfig();
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(all)) {
    if (k.startsWith("guardian:")) raw[k.slice("guardian:".length)] = v;
  }
  const problems = foreignConfigKeyProblems(all, pulumi.getProject());
  let config: GuardianConfig | undefined;
  try {
    config = parseConfig(raw);
  } catch (e) {
    if (!(e instanceof GuardianConfigError)) throw e;
    problems.push(...e.problems);
  }
  const isSecret = (pulumi.runtime as any).isConfigSecret as ((k: string) => boolean) | undefined;
  if (isSecret && raw.databaseUrl !== undefined && !isSecret("guardian:databaseUrl")) {
    problems.push("guardian:databaseUrl: must be stored as a secret (pulumi config set --secret guardian:databaseUrl <url>)");
  }
  let tls: TlsSettings | undefined;
  if (config) {
    try {
      tls = tlsSettings(config);
      resolveTls(config.databaseUrl, tls); // contradictions between guardian:tls and sslmode, before any connection
    } catch (e) {
      if (e instanceof GuardianConfigError) problems.push(...e.problems);
      else if (e instanceof TlsConfigError) problems.push(`guardian:tls: ${e.message}`);
      else throw e;
    }
  }
  if (problems.length || !config) throw new GuardianConfigError(problems);
  return { config, tls, tlsSecret: isSecret?.("guardian:tls") === true };
}

async function main() {
  const { config, tls, tlsSecret } = readConfig();
  const report = await preflight(config, { tls });
  for (const line of report.notes ?? []) pulumi.log.info(`go/no-go: ${line}`);
  const discovery = report.discovery!;
  const multi = config.creditModel === "multi";
  for (const line of discoveryLines(discovery, config, multi)) pulumi.log.info(line);
  if (!multi) {
    for (const line of await withClient(config.databaseUrl, (c) => rollbackPreview(c, config), tls)) pulumi.log.info(line);
  }

  // PostgreSQL's parser (WebAssembly, loaded once): TenantPolicies and CreditFunctions read their SQL files with it.
  await loadSqlParser();
  const ctx: GuardianContext = { databaseUrl: pulumi.secret(config.databaseUrl), tls, tlsSecret, config, discovery };
  const exportRoot = process.env.GUARDIAN_EXPORT_ROOT ?? path.resolve(__dirname, config.backup.exportDir);

  // Each component waits for what lib/applyOrder.ts says it waits for, in this model.
  const applied = new Map<Step, pulumi.Resource>();
  const add = <R extends pulumi.Resource>(step: Step, build: (dependsOn: pulumi.Resource[]) => R): R => {
    const dependsOn = stepAfter(config.creditModel, step).map((s) => {
      const r = applied.get(s);
      if (!r) throw new Error(`index.ts: "${step}" is declared before "${s}", which lib/applyOrder.ts says it waits for`);
      return r;
    });
    const r = build(dependsOn);
    applied.set(step, r);
    return r;
  };

  const backup = multi ? add("backup", () => new Backup("backup", { ctx, databaseUrlPlain: config.databaseUrl, exportRoot })) : undefined;
  const schema = add("credit schema", (dependsOn) => new CreditSchema("credit-schema", { ctx }, { dependsOn }));
  add("catalogue", (dependsOn) => new Catalogue("catalogue", { ctx }, { dependsOn }));
  add("audit", (dependsOn) => new Audit("audit", { ctx }, { dependsOn }));
  const tenancy = add("tenancy", (dependsOn) => new TenantPolicies("tenant-policies", { ctx }, { dependsOn }));
  const margins = add("margins", (dependsOn) => new Margins("margins", { ctx }, { dependsOn }));

  // The model switch, as one change with its steps (components/modelSwitch.ts): preview shows `model: multi => unified`.
  const modelSwitch = new ModelSwitch("model-switch", { model: config.creditModel });

  const common = {
    creditModel: config.creditModel,
    modelSwitchSteps: modelSwitch.steps,
    planMargins: margins.planMargins,
    plansBelowTarget: margins.plansBelowTarget,
    marginTarget: config.marginTarget,
    policies: tenancy.policies,
    replacedPolicies: tenancy.replacedPolicies,
    databaseShape: describeShape(discovery.shape),
  };

  if (multi) {
    const functions = add("functions", (dependsOn) => new CreditFunctions("credit-functions", { ctx }, { dependsOn }));
    const plan = await withClient(config.databaseUrl, (c) => backfillPlan(c, config), tls);
    pulumi.log.info(describePlan(plan));
    const backfill = add("backfill", (dependsOn) => new Backfill("backfill", { ctx, backup: backup!, plan, dependsOn }));
    const verification = add(
      "verification",
      (dependsOn) =>
        new Verification("verification", {
          ctx,
          model: "multi",
          upstream: {
            backupId: backup!.snapshot.backupId,
            backfillFinishedAt: backfill.run.finishedAt,
            functions: functions.combinedSqlSha256,
            schema: schema.combinedSqlSha256,
            policies: tenancy.sqlSha256,
          },
          dependsOn,
        }),
    );
    return {
      ...common,
      backupId: backup!.snapshot.backupId,
      backupRowCounts: backup!.snapshot.rowCounts,
      backupChecksums: backup!.snapshot.checksums,
      backupExportDir: backup!.snapshot.exportDir,
      backupManifestSigned: backup!.snapshot.manifestSigned,
      restoreVerified: backup!.restoreCheck.restoreVerified,
      backfillPlan: plan.orgsToMigrate,
      rowsBackfilled: backfill.run.rowsBackfilled,
      backfillOrgsPerSecond: backfill.run.orgsPerSecond,
      negativeBalanceOrgs: backfill.run.negativeBalanceOrgs,
      functions: functions.functionSignatures,
      functionsSqlSha256: functions.sqlSha256,
      orgsPerPlan: verification.run.facts.apply((f) => f?.orgsPerPlan),
      orgsMigrated: verification.run.facts.apply((f) => f?.orgsMigrated),
      orgsTotal: verification.run.facts.apply((f) => f?.orgsTotal),
      conservation: verification.run.facts.apply((f) => ({ splitOrgs: f?.splitOrgs, splitOrgsConserved: f?.splitOrgsConserved })),
      verification: verification.run.facts,
      verifiedAt: verification.run.verifiedAt,
    };
  }

  const rollback = add("rollback", (dependsOn) => new Rollback("rollback", { ctx, batchSize: config.backfill.rollbackBatchSize }, { dependsOn }));
  const verification = add(
    "verification",
    (dependsOn) =>
      new Verification("verification", {
        ctx,
        model: "unified",
        upstream: { rollback: rollback.run.v1DefinitionMd5, orgsSwitched: rollback.run.orgsSwitched, policies: tenancy.sqlSha256 },
        dependsOn,
      }),
  );
  return {
    ...common,
    rolledBack: rollback.run.rolledBack,
    rollbackBackupId: rollback.run.backupId,
    orgsSwitched: rollback.run.orgsSwitched,
    unifiedValuesChanged: rollback.run.unifiedValuesChanged,
    rollbackDurationMs: rollback.run.durationMs,
    v1DefinitionMd5: rollback.run.v1DefinitionMd5,
    unifiedValuesKept: rollback.run.unifiedValuesKept,
    v1SearchPathPinned: rollback.run.v1SearchPathPinned,
    pricesRestored: rollback.run.pricesRestored,
    functionRestored: rollback.run.functionRestored,
    v1Weaknesses: rollback.run.v1Weaknesses,
    orgsTotal: verification.run.facts.apply((f) => f?.orgsTotal),
    functions: verification.run.facts.apply((f) => f?.functions),
    verification: verification.run.facts,
    verifiedAt: verification.run.verifiedAt,
  };
}

/** Expected refusals (bad config, NO-GO) end the run with their message alone: no stack trace, and no frames for
 *  Pulumi to format (lib/errors.ts withoutFrames says why). */
function cleanly(e: unknown): never {
  if (e instanceof GuardianRefusal) throw withoutFrames(new pulumi.RunError(e.message));
  throw e;
}

export = main().catch(cleanly);
