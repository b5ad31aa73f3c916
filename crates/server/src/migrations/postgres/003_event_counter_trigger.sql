-- As ../sqlite/003_event_counter_trigger.sql: appending an event is one statement (one round
-- trip), and the user's counter advances in the same transaction.
CREATE FUNCTION events_advance_counter() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET last_event_id = GREATEST(last_event_id, NEW.id) WHERE id = NEW.user_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_advance_counter AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_advance_counter();
