-- Rollback step 2a: lock at most $3 of the multi-model organizations stored in heap pages [$1, $2) of
-- public.organization_credits (the caller runs the same range again while a batch comes back full). Once these rows
-- are locked no consume_credits_rpc call can debit or log for them until the batch commits, so the sums computed by
-- step 2b (a later statement, hence a fresh snapshot) include every consumption that happened.
-- The walk goes in physical order (a TID range scan), as the backfill's does: each heap page is read, dirtied and
-- written once (docs/architecture.md, "How the backfill walks the table").
SELECT organization_id
  FROM public.organization_credits
 WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
   AND credit_model = 'multi'
 LIMIT $3
 FOR UPDATE;
