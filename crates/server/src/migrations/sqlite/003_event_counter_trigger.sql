-- An appended event advances its user's counter inside the database, so appending is one
-- statement: the insert takes `last_event_id + 1` and this trigger records it (never moving the
-- counter back: a copied log may be shorter than its counter after a reset).
CREATE TRIGGER events_advance_counter AFTER INSERT ON events
BEGIN
    UPDATE users SET last_event_id = max(last_event_id, NEW.id) WHERE id = NEW.user_id;
END;
