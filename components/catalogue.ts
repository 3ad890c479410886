/**
 * Catalogue: the action catalogue and the plan catalogue as config. SQL generated from guardian:actions,
 * guardian:plans, guardian:split and guardian:providerCosts (lib/catalogueSql.ts), so a config change is a preview
 * diff of that SQL and nothing else.
 *
 * Retained on delete (no dropSql): catalogue rows are referenced by the consumption log, and rollback keeps them.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  actionCatalogueProbe, actionCatalogueSql, planCatalogueProbe, planCatalogueSql,
} from "../lib/catalogueSql";
import { sha256 } from "../lib/sql";
import { GuardianContext, sqlTextObject } from "./sqlFile";

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
  /** The catalogue plans, sorted. */
  readonly planNames: pulumi.Output<string[]>;
  /** Fingerprint of the live catalogue rows right after they were written, keyed like sqlSha256. */
  readonly appliedFingerprints: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: CatalogueArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Catalogue", name, {}, opts);
    const { ctx } = args;
    const actionsSql = actionCatalogueSql(ctx.config);
    const plansSql = planCatalogueSql(ctx.config);

    const actions = sqlTextObject(`${name}-actions`, ctx, {
      kind: "catalogue",
      objectName: "public.credit_actions",
      sqlFile: ACTIONS_SOURCE,
      sql: actionsSql,
      probeSql: actionCatalogueProbe(ctx.config),
    }, { parent: this });
    const plans = sqlTextObject(`${name}-plans`, ctx, {
      kind: "catalogue",
      objectName: "guardian.plan_catalogue",
      sqlFile: PLANS_SOURCE,
      sql: plansSql,
      probeSql: planCatalogueProbe(),
    }, { parent: this });

    this.sqlSha256 = pulumi.output<Record<string, string>>({ [ACTIONS_SOURCE]: sha256(actionsSql), [PLANS_SOURCE]: sha256(plansSql) });
    this.actionTypes = pulumi.output(Object.keys(ctx.config.actions).sort());
    this.planNames = pulumi.output(Object.keys(ctx.config.plans).sort());

    this.appliedFingerprints = pulumi
      .all([actions.appliedFingerprint, plans.appliedFingerprint])
      .apply(([a, p]): Record<string, string> => ({ [ACTIONS_SOURCE]: a, [PLANS_SOURCE]: p }));

    this.registerOutputs({
      sqlSha256: this.sqlSha256,
      actionTypes: this.actionTypes,
      planNames: this.planNames,
      appliedFingerprints: this.appliedFingerprints,
    });
  }
}
