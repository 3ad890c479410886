/**
 * The tables whose rows row level security guards: one list, read by the tenancy component (its policies and RLS
 * switches, components/tenantPolicies.ts), the verification and the report (lib/isolation.ts), and the RLS matrix test.
 */
/** A table whose rows RLS guards. The RLS matrix test and the component are both generated from this list. */
export interface TenantTable {
  /** Schema-qualified name. Its files are sql/tenancy/<nn>_<table name without schema>_<command|rls>.sql. */
  table: string;
  /** Whether rows belong to one organization (meta.tenantData: the policy pack then requires RLS and policies). */
  tenantData: boolean;
  /** Column holding the owning organization's id; null for a table shared by every tenant (the catalogue). */
  orgColumn: string | null;
}

export const TENANT_TABLES: readonly TenantTable[] = [
  { table: "public.organizations", tenantData: true, orgColumn: "id" },
  { table: "public.profiles", tenantData: true, orgColumn: "organization_id" },
  { table: "public.organization_credits", tenantData: true, orgColumn: "organization_id" },
  { table: "public.credit_actions", tenantData: false, orgColumn: null },
  { table: "public.credit_consumption_logs", tenantData: true, orgColumn: "organization_id" },
  { table: "guardian.migration_journal", tenantData: true, orgColumn: "organization_id" },
];
