-- The consumer's way to give a whole delivery batch back (consumer.c): its batch hook's
-- inbox rows are outside every event's savepoint, so a handler that fails makes the
-- batch's transaction fail (this raises) instead of asking for a retry that would undo
-- only part of its work. Each event then comes again alone.
CREATE FUNCTION notification_fail(reason text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'notification consumer: %', reason;
END
$$;
