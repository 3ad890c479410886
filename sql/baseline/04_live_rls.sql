-- The live (flawed) row level security: organization_credits readable by ANY authenticated user (cross-tenant leak);
-- credit_actions and credit_consumption_logs without policies. Supabase's default grants expose every table to the
-- Data API roles.
GRANT SELECT, INSERT, UPDATE, DELETE ON public.organizations, public.profiles, public.organization_credits,
  public.credit_actions, public.credit_consumption_logs TO anon, authenticated, service_role;
GRANT USAGE, SELECT ON SEQUENCE public.credit_consumption_logs_id_seq TO anon, authenticated, service_role;
ALTER TABLE public.organization_credits ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Authenticated users can view credits" ON public.organization_credits
  FOR SELECT TO authenticated USING (true);
