/**
 * Margins: the view public.plan_margins (and public.action_margins) over the plan catalogue, the provider unit costs
 * and the consumption log, every pool counted; and the same plan margins computed from config at program time, so
 * preview names every plan below guardian:marginTarget before anything is applied (contract.md "Margin tracking").
 *
 *   ${name}-view  kind "view"  sql/margins/01_plan_margins.sql  public.plan_margins, public.action_margins
 *
 * The gate: below-target plans are a pulumi.log.warn on this component in every preview and update. With
 * guardian:marginGate = "mandatory" the policy pack blocks the update; it reads the view resource's
 * `meta` = { kind: "plan-margins", plans, providerCosts, marginTarget, marginGate }. This component never blocks by
 * itself: the gate's decision lives in one place.
 *
 * Needs guardian.plan_catalogue, guardian.provider_costs and the additive log columns: depend on CreditSchema.
 * The views read the catalogue rows live, so they need not wait for the Catalogue component to be created.
 */
import * as pulumi from "@pulumi/pulumi";
import { describeMargin, marginFindings, planMargins, type PlanMargin } from "../lib/margins";
import { loadSql } from "../lib/sql";
import { type GuardianContext, sqlFileObject } from "./sqlFile";
import type { SqlObject } from "../providers/sqlObject";

export interface MarginsArgs {
  /**
   * Connection string (secret) and validated config. Read: `config.plans` (default: facts.md's plans),
   * `config.providerCosts` (default ai 0.005, whatsapp 0.0157, email 0, sms 0.05), `config.marginTarget`
   * (default 0.82), `config.marginGate` (default "advisory"), `config.ddl`.
   */
  ctx: GuardianContext;
}

export const MARGINS_FILE = "margins/01_plan_margins.sql";

/** Probe: both views (definition, options such as security_invoker, grants). No row unless both exist. */
export const MARGINS_PROBE = `
SELECT md5(string_agg(c.oid::regclass::text || ':' || pg_get_viewdef(c.oid) || ':' || coalesce(array_to_string(c.reloptions, ','), '')
                      || ':' || coalesce(c.relacl::text, ''), '|' ORDER BY c.relname)) AS fingerprint
  FROM pg_class c
 WHERE c.oid IN (to_regclass('public.plan_margins'), to_regclass('public.action_margins')) AND c.relkind = 'v'
HAVING count(*) = 2`;

/** Plan and per-API margin views, and the plans below the margin target (advisory warnings, policy-pack input). */
export class Margins extends pulumi.ComponentResource {
  public readonly view: SqlObject;
  /** Every plan of the catalogue, with cost over all four pools; non-comparable plans listed, not hidden. */
  public readonly planMargins: PlanMargin[];
  /** Comparable plans whose margin is below marginTarget. */
  public readonly plansBelowTarget: string[];
  /** One sentence per plan, below-target first (the report prints them). */
  public readonly findings: string[];
  public readonly marginTarget: number;
  public readonly marginGate: "advisory" | "mandatory";
  public readonly sqlSha256: string;

  constructor(name: string, args: MarginsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("guardian:components:Margins", name, {}, opts);
    const { config } = args.ctx;
    this.marginTarget = config.marginTarget;
    this.marginGate = config.marginGate;
    this.planMargins = planMargins(config);
    this.plansBelowTarget = this.planMargins.filter((m) => m.belowTarget).map((m) => m.plan);
    this.findings = marginFindings(config);
    this.sqlSha256 = loadSql(MARGINS_FILE).sha256;

    const gate = this.marginGate === "mandatory" ? "mandatory: the policy pack blocks the update" : "advisory";
    for (const m of this.planMargins.filter((p) => p.belowTarget)) {
      pulumi.log.warn(`margin below target (${gate}): ${describeMargin(m, this.marginTarget)}`, this);
    }

    this.view = sqlFileObject(
      `${name}-view`,
      args.ctx,
      {
        file: MARGINS_FILE,
        kind: "view",
        objectName: "public.plan_margins",
        probeSql: MARGINS_PROBE,
        dropSql: "DROP VIEW IF EXISTS public.action_margins; DROP VIEW IF EXISTS public.plan_margins;",
        meta: {
          kind: "plan-margins",
          plans: config.plans,
          providerCosts: config.providerCosts,
          marginTarget: config.marginTarget,
          marginGate: config.marginGate,
        },
      },
      { parent: this },
    );

    this.registerOutputs({
      view: this.view,
      planMargins: this.planMargins,
      plansBelowTarget: this.plansBelowTarget,
      findings: this.findings,
      marginTarget: this.marginTarget,
      marginGate: this.marginGate,
      sqlSha256: this.sqlSha256,
    });
  }
}
