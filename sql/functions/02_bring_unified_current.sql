-- Once per database, in the transaction that installs the debit keeping the unified columns current
-- (01_consume_debit.sql; contract: "The application around the credits keeps working"): a database already in the
-- multi model from an earlier version, whose v2 left credits_remaining at its backup value, gets every multi
-- organization's credits_remaining brought current: its value in the latest backup minus the unified cost of every
-- success logged since that backup, floored at 0 (the reconcile earlier rollbacks did). Writes to the organization's
-- credit row meanwhile (the application's upgrades) are not known to that rule; this runs once, and from here on v2
-- keeps the column current itself. The credit rows are locked against writes (EXCLUSIVE: reads go on) for this one
-- statement, so no call commits between the sum and the update. A database with no multi organization (a first
-- migration) only gets the marker. Nothing is done when the marker is there.
DO $bring$
DECLARE
  v_backup text;
  v_since bigint;
  v_n bigint := 0;
BEGIN
  IF EXISTS (SELECT 1 FROM guardian.unified_columns_current) THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM public.organization_credits WHERE credit_model = 'multi') THEN
    SELECT b.backup_id INTO v_backup FROM guardian.backups b
     WHERE to_regnamespace(b.schema_name) IS NOT NULL
     ORDER BY b.created_at DESC LIMIT 1;
    IF v_backup IS NULL THEN
      RAISE EXCEPTION 'organizations are multi, but no backup schema is left to bring their credits_remaining current from'
        USING HINT = 'restore the guardian_backup_* schema of the migration, or roll back with the version that migrated';
    END IF;
    LOCK TABLE public.organization_credits IN EXCLUSIVE MODE;
    EXECUTE format('SELECT coalesce(max(id), 0) FROM %I.credit_consumption_logs', v_backup) INTO v_since;
    EXECUTE format(
      $q$UPDATE public.organization_credits oc
            SET credits_remaining = greatest(0, b.credits_remaining - coalesce(s.spent, 0))
           FROM %I.organization_credits b
           LEFT JOIN (SELECT l.organization_id, sum(l.credits_consumed)::bigint AS spent
                        FROM public.credit_consumption_logs l
                       WHERE l.success AND l.id > $1
                       GROUP BY l.organization_id) s USING (organization_id)
          WHERE oc.organization_id = b.organization_id AND oc.credit_model = 'multi'
            AND oc.credits_remaining IS DISTINCT FROM greatest(0, b.credits_remaining - coalesce(s.spent, 0))$q$,
      v_backup)
      USING v_since;
    GET DIAGNOSTICS v_n = ROW_COUNT;
  END IF;
  INSERT INTO guardian.unified_columns_current (backup_id, orgs_brought_current) VALUES (v_backup, v_n);
END
$bring$;
