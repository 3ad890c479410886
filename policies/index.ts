/**
 * guardian-credits policy pack: the go/no-go gates the engine checks on every preview and update.
 *
 *   tenant-tables-have-rls            mandatory  every tenant table has an rls SqlObject and at least one policy
 *   security-definer-pins-search-path mandatory  SECURITY DEFINER functions pin a search_path that ends with pg_temp
 *                                                (an empty one fails: it searches the temporary schema first), revoke
 *                                                EXECUTE from PUBLIC and from anon explicitly, never grant anon/PUBLIC
 *                                                (SQL text and meta both checked)
 *   backfill-after-verified-backup    mandatory  every Backfill depends on a Backup and requires a verified restore
 *   allocation-shares-valid           mandatory  Backfill split: every pool stated, each share 0..1, sum <= 1
 *   plan-margins                      advisory   plans below the margin target, every pool counted (gate advisory)
 *   plan-margins-mandatory            mandatory  the same, when the margins object's meta.marginGate is "mandatory"
 *
 * Run it with `pulumi preview --policy-pack <abs path>/policies/run-policy-pack` (see that script for why not the
 * directory). The rules themselves are in rules.ts; they read SQL with PostgreSQL's own parser (lib/pgsql.ts), which the
 * validators load once (asynchronously) before their first check.
 */
import { PolicyPack, type ReportViolation, type StackValidationArgs } from "@pulumi/policy";
import {
  BACKFILL,
  backfillProblems,
  loadSqlParser,
  marginsResources,
  marginViolations,
  type Res,
  securityDefinerProblems,
  splitProblems,
  SQL_OBJECT,
  tenantTablesHaveRls,
  ownerOnlyTriggerTruncate,
} from "./rules";

const resources = (args: StackValidationArgs): Res[] => args.resources as unknown as Res[];

function marginsGate(gate: "advisory" | "mandatory") {
  return (args: StackValidationArgs, report: ReportViolation) => {
    for (const r of marginsResources(resources(args))) {
      const isMandatory = r.props.meta?.marginGate === "mandatory";
      // Each margins object is judged by exactly one of the two rules, as its meta.marginGate says.
      if (isMandatory !== (gate === "mandatory")) continue;
      for (const m of marginViolations(r.props.meta)) report(`${r.props.objectName ?? r.name}: ${m}`, r.urn);
    }
  };
}

new PolicyPack("guardian-credits", {
  policies: [
    {
      name: "tenant-tables-have-rls",
      description: "Every table holding tenant data has row level security enabled and at least one policy.",
      enforcementLevel: "mandatory",
      validateStack: async (args, report) => {
        await loadSqlParser();
        for (const v of tenantTablesHaveRls(resources(args))) report(v.message, v.urn);
      },
    },
    {
      name: "owner-only-trigger-truncate",
      description:
        "No GRANT of TRIGGER or TRUNCATE on the tables the program's SECURITY DEFINER functions read or write: a trigger runs as their owner, TRUNCATE bypasses row level security.",
      enforcementLevel: "mandatory",
      validateStack: async (args, report) => {
        await loadSqlParser();
        for (const v of ownerOnlyTriggerTruncate(resources(args))) report(v.message, v.urn);
      },
    },
    {
      name: "security-definer-pins-search-path",
      description:
        "SECURITY DEFINER functions pin a search_path ending with pg_temp, revoke EXECUTE from PUBLIC and from anon explicitly, and grant nothing to anon or PUBLIC.",
      enforcementLevel: "mandatory",
      validateResource: async (args, report) => {
        if (args.type !== SQL_OBJECT) return;
        const isFunction = args.props.kind === "function";
        const saysDefiner = typeof args.props.sql === "string" && /security\s+definer/i.test(args.props.sql);
        if (!isFunction && !saysDefiner) return;
        await loadSqlParser(); // PostgreSQL's parser (WebAssembly), loaded once per pack process
        for (const m of securityDefinerProblems({ props: args.props, name: args.name })) report(m);
      },
    },
    {
      name: "backfill-after-verified-backup",
      description: "Every Backfill depends on a Backup resource and requires its restore to be verified.",
      enforcementLevel: "mandatory",
      validateStack: (args, report) => {
        for (const r of resources(args).filter((x) => x.type === BACKFILL)) {
          for (const m of backfillProblems(r)) report(m, r.urn);
        }
      },
    },
    {
      name: "allocation-shares-valid",
      description: "The Backfill split states every pool with a share from 0 to 1, the shares summing to at most 1.",
      enforcementLevel: "mandatory",
      validateResource: (args, report) => {
        if (args.type !== BACKFILL) return;
        for (const m of splitProblems(args.props.split, args.name)) report(m);
      },
    },
    {
      name: "plan-margins",
      description: "Plans whose margin, every pool counted, is below guardian:marginTarget (advisory gate).",
      enforcementLevel: "advisory",
      validateStack: marginsGate("advisory"),
    },
    {
      name: "plan-margins-mandatory",
      description: "Plans whose margin, every pool counted, is below guardian:marginTarget, when guardian:marginGate is mandatory.",
      enforcementLevel: "mandatory",
      validateStack: marginsGate("mandatory"),
    },
  ],
});
