/**
 * Catalogue: the action catalogue and the plan catalogue as config. SQL generated from guardian:actions,
 * guardian:plans, guardian:split and guardian:providerCosts (lib/catalogueSql.ts), so a config change is a preview
 * diff of that SQL and nothing else.
 *
 * Retained on delete (no dropSql): catalogue rows are referenced by the consumption log, and rollback keeps them.
 */
import * as pulumi from "@pulumi/pulumi";
import { actionCatalogueProbe, actionCatalogueSql, planCatalogueProbe, planCatalogueSql, priceChanges } from "../lib/catalogueSql";
import { sha256 } from "../lib/sql";
import { type GuardianContext, sqlTextObject } from "./sqlFile";

export const ACTIONS_SOURCE = "(generated from guardian:actions)";
export const PLANS_SOURCE = "(generated from guardian:plans, guardian:split, guardian:providerCosts)";

export interface CatalogueArgs {
  /**
   * The connection string (secret) and the validated config. Required. Uses `config.actions` (every action with its
   * unified cost and pool costs), `config.plans`, `config.split`, `config.providerCosts`, and `config.ddl`.
   * Needs the CreditSchema's columns and tables: pass it in `opts.dependsOn`.
   */
  ctx: GuardianContext;
}

/** The action catalogue (public.credit_actions) and plan catalogue (guardian tables), written from config. */
export class Catalogue extends pulumi.ComponentResource {
  /** sha256 of the generated SQL, keyed by what it was generated from. */
  readonly sqlSha256: pulumi.Output<Record<string, string>>;
  /** The configured action types, sorted: exactly the rows this component writes to credit_actions. */
  readonly actionTypes: pulumi.Output<string[]>;
  /** Live prices the config changes, "action: live -> config" (multi only; empty when every live price is kept). */
  readonly priceChanges: pulumi.Output<Record<string, string>>;
  /** The catalogue plans, sorted. */
  readonly planNames: pulumi.Output<string[]>;
  /** Fingerprint of the live catalogue rows right after they were written, keyed like sqlSha256. */
  readonly appliedFingerprints: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: CatalogueArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Catalogue", name, {}, opts);
    const { ctx } = args;
    // Prices change only with Phase 3.5 applied: in the unified model (never migrated, or rolled back, which puts
    // the backed-up prices back) the live credits_cost is left alone.
    const setPrices = ctx.config.creditModel === "multi";
    const actionsSql = actionCatalogueSql(ctx.config, { setPrices });
    const changes = setPrices && ctx.discovery ? priceChanges(ctx.discovery.livePrices, ctx.config) : [];
    const plansSql = planCatalogueSql(ctx.config);

    const actions = sqlTextObject(
      `${name}-actions`,
      ctx,
      {
        kind: "catalogue",
        objectName: "public.credit_actions",
        sqlFile: ACTIONS_SOURCE,
        sql: actionsSql,
        probeSql: actionCatalogueProbe(ctx.config, { setPrices }),
        // Shown in preview: each live price the config changes, "live -> config".
        ...(changes.length ? { meta: { priceChanges: Object.fromEntries(changes.map((c) => [c.action, `${c.live} -> ${c.config}`])) } } : {}),
      },
      { parent: this },
    );
    const plans = sqlTextObject(
      `${name}-plans`,
      ctx,
      {
        kind: "catalogue",
        objectName: "guardian.plan_catalogue",
        sqlFile: PLANS_SOURCE,
        sql: plansSql,
        probeSql: planCatalogueProbe(),
      },
      { parent: this },
    );

    this.sqlSha256 = pulumi.output<Record<string, string>>({ [ACTIONS_SOURCE]: sha256(actionsSql), [PLANS_SOURCE]: sha256(plansSql) });
    this.actionTypes = pulumi.output(Object.keys(ctx.config.actions).sort());
    this.planNames = pulumi.output(Object.keys(ctx.config.plans).sort());
    this.priceChanges = pulumi.output(Object.fromEntries(changes.map((c) => [c.action, `${c.live} -> ${c.config}`])));

    this.appliedFingerprints = pulumi
      .all([actions.appliedFingerprint, plans.appliedFingerprint])
      .apply(([a, p]): Record<string, string> => ({ [ACTIONS_SOURCE]: a, [PLANS_SOURCE]: p }));

    this.registerOutputs({
      sqlSha256: this.sqlSha256,
      actionTypes: this.actionTypes,
      planNames: this.planNames,
      priceChanges: this.priceChanges,
      appliedFingerprints: this.appliedFingerprints,
    });
  }
}
