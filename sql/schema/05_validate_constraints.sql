-- Validation of the Phase 3.5 CHECK constraints, in its own transaction. The files that add them (02-04) add them
-- NOT VALID, so their ACCESS EXCLUSIVE lock lasts a catalogue change only; VALIDATE scans the table under a SHARE
-- UPDATE EXCLUSIVE lock, which lets applications read and write throughout. A no-op once validated.
ALTER TABLE public.organization_credits VALIDATE CONSTRAINT organization_credits_ai_credits_available_nonnegative;
ALTER TABLE public.organization_credits VALIDATE CONSTRAINT organization_credits_whatsapp_credits_available_nonnegative;
ALTER TABLE public.organization_credits VALIDATE CONSTRAINT organization_credits_email_credits_available_nonnegative;
ALTER TABLE public.organization_credits VALIDATE CONSTRAINT organization_credits_sms_credits_available_nonnegative;
ALTER TABLE public.organization_credits VALIDATE CONSTRAINT organization_credits_credit_model_known;
ALTER TABLE public.organization_credits VALIDATE CONSTRAINT organization_credits_allocation_epoch_nonnegative;
ALTER TABLE public.credit_actions VALIDATE CONSTRAINT credit_actions_ai_credits_required_nonnegative;
ALTER TABLE public.credit_actions VALIDATE CONSTRAINT credit_actions_whatsapp_credits_required_nonnegative;
ALTER TABLE public.credit_actions VALIDATE CONSTRAINT credit_actions_email_credits_required_nonnegative;
ALTER TABLE public.credit_actions VALIDATE CONSTRAINT credit_actions_sms_credits_required_nonnegative;
ALTER TABLE public.credit_consumption_logs VALIDATE CONSTRAINT credit_consumption_logs_quantity_range;
ALTER TABLE public.credit_consumption_logs VALIDATE CONSTRAINT credit_consumption_logs_pools_consumed_nonnegative;
ALTER TABLE public.credit_consumption_logs VALIDATE CONSTRAINT credit_consumption_logs_credit_model_known;
