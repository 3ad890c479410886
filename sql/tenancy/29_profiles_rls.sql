-- public.profiles: row level security on. Table owners and BYPASSRLS roles (service_role) are not subject to it;
-- FORCE is not used, so SECURITY DEFINER functions owned by the table owner keep working.
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
