-- The Guardian CRM schema before Phase 3.5 (unified credits), as facts.md describes it, flaws included.
-- Every object is created only where missing, so a live database is left as it is.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS public.organizations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  slug text UNIQUE NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE,
  organization_id uuid REFERENCES public.organizations(id),
  role text NOT NULL DEFAULT 'user',
  email text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.organization_credits (
  organization_id uuid PRIMARY KEY REFERENCES public.organizations(id) ON DELETE CASCADE,
  plan_name text NOT NULL DEFAULT 'free',
  total_credits integer NOT NULL DEFAULT 0,
  credits_remaining integer NOT NULL DEFAULT 0,
  cycle_start_date timestamptz NOT NULL DEFAULT now(),
  cycle_end_date timestamptz,
  is_trial boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.credit_actions (
  action_type text PRIMARY KEY,
  credits_cost integer NOT NULL,
  description text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.credit_consumption_logs (
  id bigserial PRIMARY KEY,
  organization_id uuid NOT NULL REFERENCES public.organizations(id),
  action_type text NOT NULL REFERENCES public.credit_actions(action_type),
  credits_consumed integer NOT NULL,
  credits_remaining integer NOT NULL,
  success boolean NOT NULL DEFAULT true,
  error_message text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS credit_consumption_logs_org_idx ON public.credit_consumption_logs (organization_id, created_at);

-- The live action catalogue (unified credits_cost).
INSERT INTO public.credit_actions (action_type, credits_cost, description) VALUES
  ('ai_chat', 1, 'AI chat message'),
  ('ai_assistant', 2, 'AI assistant task'),
  ('form_generation', 5, 'AI form generation'),
  ('automation_run', 3, 'Automation run'),
  ('whatsapp_message', 1, 'WhatsApp message'),
  ('email_send', 1, 'E-mail'),
  ('bulk_email', 10, 'Bulk e-mail campaign'),
  ('sms_send', 2, 'SMS')
ON CONFLICT (action_type) DO NOTHING;
