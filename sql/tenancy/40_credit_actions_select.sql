-- public.credit_actions: the price list. Every reader the database grants SELECT reads every row: a signed-in user,
-- and anon where the database lets the public read it (its grant is left as found).
DROP POLICY IF EXISTS guardian_select ON public.credit_actions;
CREATE POLICY guardian_select ON public.credit_actions
  AS PERMISSIVE FOR SELECT TO anon, authenticated
  USING (true);
