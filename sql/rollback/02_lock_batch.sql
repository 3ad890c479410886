-- Rollback step 2a: lock the next batch of multi-model organizations (after cursor $1, at most $2). Once these rows
-- are locked no consume_credits_rpc call can debit or log for them until the batch commits, so the sums computed by
-- step 2b (a later statement, hence a fresh snapshot) include every consumption that happened.
SELECT organization_id
  FROM public.organization_credits
 WHERE organization_id > $1::uuid AND credit_model = 'multi'
 ORDER BY organization_id
 LIMIT $2
 FOR UPDATE;
