-- Audit, part 1: the audit is append-only, and the migration journal holds no personal data.
--
-- The audit is two tables (docs/architecture.md, "Audit"):
--   public.credit_consumption_logs  one row per consumption v2 logs: every success and every refused
--                                   INSUFFICIENT_CREDITS / TRIAL_EXPIRED attempt. Organization, acting user and action
--                                   are stored as ids; amounts and time. No e-mail, name or free text about a person.
--   guardian.migration_journal      one row per migration step (backup, schema change, backfill batch, function switch,
--                                   verification, rollback, purge, erasure): time, step, object, organization and actor
--                                   ids, and `details` made of ids, counts and hashes only (enforced below).
--
-- Records enter only through the credit functions (SECURITY DEFINER, as the owner) and the program: no Data API role,
-- service_role included, may INSERT a consumption record or a journal entry (see the REVOKEs at the end).
-- Records leave only through guardian.purge_audit() (retention, 02_retention_purge.sql) and guardian.erase_user()
-- (GDPR erasure, 03_erasure.sql). Those SECURITY DEFINER functions, running as the tables' owner, set the
-- transaction-local setting guardian.audit_maintenance = 'on' around their own statements and restore it before they
-- return. Everything else is refused:
--   * anon, authenticated, service_role and PUBLIC lose UPDATE, DELETE, TRUNCATE and TRIGGER: "permission denied";
--   * whoever still holds (or is later granted) those privileges is refused by the trigger guardian_audit_append_only;
--     the setting opens it only for the owner's role (any role can set a custom setting, so it alone proves nothing).
-- The triggers are ENABLE ALWAYS, so session_replication_role = replica does not silence them either.
-- What no trigger can stop: the owner or a superuser who sets guardian.audit_maintenance by hand or runs
-- ALTER TABLE ... DISABLE TRIGGER. Those are deliberate acts of the database administrator, visible in the DDL.
--
-- Applied as one SqlObject (kind "trigger", retained on delete). Idempotent: CREATE OR REPLACE everywhere.

CREATE OR REPLACE FUNCTION guardian.audit_refuse_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  -- The flag counts only for the table's owner (or a member of its role, or a superuser): that is who the purge and
  -- erasure functions run as. A role granted UPDATE or DELETE by someone else cannot open the door by setting it.
  IF coalesce(current_setting('guardian.audit_maintenance', true), '') = 'on'
     AND pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
    -- Proceed: a row-level trigger returns the row (NEW for UPDATE, OLD for DELETE); a statement-level one's
    -- return value is ignored.
    RETURN CASE WHEN TG_LEVEL = 'ROW' THEN coalesce(NEW, OLD) END;
  END IF;
  RAISE EXCEPTION '% on %.% refused: the audit is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'records leave only through guardian.purge_audit() (retention) and guardian.erase_user() (GDPR erasure)';
END
$fn$;
COMMENT ON FUNCTION guardian.audit_refuse_change() IS
  'Refuses UPDATE, DELETE and TRUNCATE on an audit table unless guardian.audit_maintenance = ''on'' (set only by guardian.purge_audit and guardian.erase_user).';

-- Where in a jsonb value personal data sits, or NULL. Personal data: a key that names a personal attribute
-- (compared lower-case with everything but letters removed, so "e_mail", "firstName", "Phone-Number" all match;
-- "plan_name" or "schemaName" do not), or a string (key or value) containing '@', like an e-mail address.
CREATE OR REPLACE FUNCTION guardian.audit_personal_data_at(p_value jsonb, p_path text DEFAULT 'details')
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  k text;
  v jsonb;
  i integer;
  found text;
BEGIN
  CASE jsonb_typeof(p_value)
  WHEN 'object' THEN
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(p_value) e LOOP
      IF regexp_replace(lower(k), '[^a-z]', '', 'g') = ANY (ARRAY[
           'email', 'emailaddress', 'mail', 'name', 'firstname', 'lastname', 'fullname', 'givenname', 'familyname',
           'surname', 'displayname', 'username', 'phone', 'phonenumber', 'mobile', 'telephone', 'tel', 'address',
           'streetaddress', 'postaladdress', 'ip', 'ipaddress', 'birthdate', 'dateofbirth', 'dob']) THEN
        RETURN format('%s.%s (a personal-data key)', p_path, k);
      END IF;
      IF position('@' IN k) > 0 THEN
        RETURN format('%s (a key containing "@", like an e-mail address)', p_path);
      END IF;
      found := guardian.audit_personal_data_at(v, p_path || '.' || k);
      IF found IS NOT NULL THEN
        RETURN found;
      END IF;
    END LOOP;
  WHEN 'array' THEN
    FOR i IN 0 .. jsonb_array_length(p_value) - 1 LOOP
      found := guardian.audit_personal_data_at(p_value -> i, format('%s[%s]', p_path, i));
      IF found IS NOT NULL THEN
        RETURN found;
      END IF;
    END LOOP;
  WHEN 'string' THEN
    IF position('@' IN p_value #>> '{}') > 0 THEN
      RETURN format('%s (a string containing "@", like an e-mail address)', p_path);
    END IF;
  ELSE
    NULL; -- numbers, booleans, null: no personal data
  END CASE;
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION guardian.audit_journal_no_personal_data()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  found text := guardian.audit_personal_data_at(NEW.details);
BEGIN
  IF found IS NULL AND position('@' IN coalesce(NEW.step, '')) > 0 THEN
    found := 'step (a string containing "@", like an e-mail address)';
  END IF;
  IF found IS NULL AND position('@' IN coalesce(NEW.object_name, '')) > 0 THEN
    found := 'object_name (a string containing "@", like an e-mail address)';
  END IF;
  IF found IS NOT NULL THEN
    RAISE EXCEPTION 'guardian.migration_journal refuses personal data: %', found
      USING ERRCODE = 'check_violation',
            HINT = 'the journal stores ids, counts and hashes only; refer to a person by uuid (actor_id)';
  END IF;
  RETURN NEW;
END
$fn$;

-- The consumption records: row-level for UPDATE and DELETE, so a statement that reaches no record goes through. The
-- CRM's records reference their organization ON DELETE CASCADE: deleting an organization runs a DELETE here even
-- when it has no record, and a statement-level refusal would stop every organization delete, not only those that
-- would take records with them. TRUNCATE is refused per statement (it has no rows to look at).
DROP TRIGGER IF EXISTS guardian_audit_append_only ON public.credit_consumption_logs;
CREATE TRIGGER guardian_audit_append_only
  BEFORE UPDATE OR DELETE ON public.credit_consumption_logs
  FOR EACH ROW EXECUTE FUNCTION guardian.audit_refuse_change();
CREATE OR REPLACE TRIGGER guardian_audit_no_truncate
  BEFORE TRUNCATE ON public.credit_consumption_logs
  FOR EACH STATEMENT EXECUTE FUNCTION guardian.audit_refuse_change();
-- The journal: statement-level, so an UPDATE or DELETE matching no row is refused too.
CREATE OR REPLACE TRIGGER guardian_audit_append_only
  BEFORE UPDATE OR DELETE OR TRUNCATE ON guardian.migration_journal
  FOR EACH STATEMENT EXECUTE FUNCTION guardian.audit_refuse_change();
CREATE OR REPLACE TRIGGER guardian_audit_no_personal_data
  BEFORE INSERT OR UPDATE ON guardian.migration_journal
  FOR EACH ROW EXECUTE FUNCTION guardian.audit_journal_no_personal_data();

ALTER TABLE public.credit_consumption_logs ENABLE ALWAYS TRIGGER guardian_audit_append_only;
ALTER TABLE public.credit_consumption_logs ENABLE ALWAYS TRIGGER guardian_audit_no_truncate;
ALTER TABLE guardian.migration_journal ENABLE ALWAYS TRIGGER guardian_audit_append_only;
ALTER TABLE guardian.migration_journal ENABLE ALWAYS TRIGGER guardian_audit_no_personal_data;

COMMENT ON TRIGGER guardian_audit_append_only ON public.credit_consumption_logs IS
  'Audit: append-only. Rows hold ids only (organization_id, user_id, action_type); purge and erasure are the only exits.';
COMMENT ON TRIGGER guardian_audit_no_truncate ON public.credit_consumption_logs IS
  'Audit: no TRUNCATE. Purge and erasure are the only exits.';
COMMENT ON TRIGGER guardian_audit_append_only ON guardian.migration_journal IS
  'Audit: append-only. Purge and erasure are the only exits.';
COMMENT ON TRIGGER guardian_audit_no_personal_data ON guardian.migration_journal IS
  'Audit: details hold ids, counts and hashes only; personal-data keys and strings containing @ are refused.';

-- Privileges: nobody but the owner may change an audit record, and nobody may add a trigger to one.
-- (The baseline, like Supabase's default privileges, granted UPDATE and DELETE on the logs to the Data API roles.)
REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER ON public.credit_consumption_logs, guardian.migration_journal
  FROM PUBLIC, anon, authenticated, service_role;
-- A journal entry is written by the program (the owner) only: a forged step would falsify the audit.
REVOKE INSERT ON guardian.migration_journal FROM PUBLIC, anon, authenticated, service_role;
-- A consumption record is written only by the credit functions (consume_credits_rpc, consume_credits_batch: SECURITY
-- DEFINER, running as the table's owner) and by the program. No Data API role inserts one, service_role included: a
-- row it could insert would be a forged success that rollback (credits_remaining = backup value - consumptions since)
-- and verification (available + consumed in epoch = allocation) both count. An application that needs to record a
-- consumption calls consume_credits_rpc as service_role.
REVOKE INSERT ON public.credit_consumption_logs FROM PUBLIC, anon, authenticated, service_role;
-- The audit's trigger functions are for its triggers only (a trigger runs its function whatever the writer's
-- privileges). guardian.audit_personal_data_at stays executable: a pure function the journal's trigger calls with the
-- writer's own privileges, so any writer the journal accepts must be able to run it.
REVOKE ALL ON FUNCTION guardian.audit_refuse_change(), guardian.audit_journal_no_personal_data()
  FROM PUBLIC, anon, authenticated, service_role;
