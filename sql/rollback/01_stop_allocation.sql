-- Rollback step 1: new and changed rows are no longer allocated to the multi model. v2 keeps serving both models
-- until step 3, so applications see no gap.
DROP TRIGGER IF EXISTS guardian_allocate_on_write ON public.organization_credits;
