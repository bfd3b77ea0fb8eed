-- 0002_ingest_functions: ingest as server-side functions, so one round trip stores a whole batch
-- of inbound messages (group commit) with the same race-safety as one message at a time.

-- The contact that owns (kind, address); created with the identity when new. Race-safe: the loser
-- of a concurrent first contact deletes its provisional contact and takes the winner's.
CREATE FUNCTION gateway_resolve_contact(p_kind text, p_address text, p_name text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    cid bigint;
    won bigint;
BEGIN
    SELECT contact_id INTO cid FROM identities WHERE kind = p_kind AND address = p_address;
    IF FOUND THEN
        RETURN cid;
    END IF;
    INSERT INTO contacts (name) VALUES (p_name) RETURNING id INTO cid;
    INSERT INTO identities (contact_id, kind, address) VALUES (cid, p_kind, p_address)
        ON CONFLICT (kind, address) DO NOTHING RETURNING contact_id INTO won;
    IF won IS NULL THEN
        DELETE FROM contacts WHERE id = cid;
        SELECT contact_id INTO cid FROM identities WHERE kind = p_kind AND address = p_address;
    END IF;
    RETURN cid;
END $$;

-- Store inbound messages: identity -> contact -> the contact's one thread -> message with the
-- next seq. `items` is a JSON array of objects with: channel, provider, provider_message_id,
-- kind, address, name, contact_id (optional, skips identity resolution), recipient, body,
-- content, raw. Duplicates (same channel + provider_message_id) are absorbed by the UNIQUE
-- index; a loser gives its seq back (it holds the conversation row lock, so nobody took a later
-- one). Returns one row per item, in order.
CREATE FUNCTION gateway_ingest(items jsonb)
RETURNS TABLE (idx int, message_id bigint, conversation_id bigint, contact_id bigint, seq bigint,
               duplicate boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    item jsonb;
    i int := 0;
    cid bigint;
    conv record;
    mid bigint;
    found_row record;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(items) LOOP
        SELECT m.id, m.conversation_id, m.seq, c.contact_id INTO found_row
          FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.channel = item->>'channel' AND m.provider_message_id = item->>'provider_message_id'
           AND m.direction = 'in';
        IF FOUND THEN
            idx := i; message_id := found_row.id; conversation_id := found_row.conversation_id;
            contact_id := found_row.contact_id; seq := found_row.seq; duplicate := true;
            RETURN NEXT;
            i := i + 1;
            CONTINUE;
        END IF;
        cid := (item->>'contact_id')::bigint;
        IF cid IS NULL THEN
            cid := gateway_resolve_contact(item->>'kind', item->>'address', item->>'name');
        END IF;
        INSERT INTO conversations AS cv
               (contact_id, last_seq, last_inbound_at, last_inbound_channel, last_message_at)
        VALUES (cid, 1, now(), item->>'channel', now())
        ON CONFLICT ON CONSTRAINT conversations_contact_id_key DO UPDATE SET
               last_seq = cv.last_seq + 1, last_inbound_at = now(),
               last_inbound_channel = EXCLUDED.last_inbound_channel,
               last_message_at = now(), updated_at = now()
        RETURNING cv.id, cv.last_seq, cv.current_episode_id INTO conv;
        INSERT INTO messages (conversation_id, seq, episode_id, direction, channel, provider,
                              provider_message_id, sender_address, recipient_address, body, content,
                              author_type, raw)
        VALUES (conv.id, conv.last_seq, conv.current_episode_id, 'in', item->>'channel',
                item->>'provider', item->>'provider_message_id', item->>'address',
                item->>'recipient', coalesce(item->>'body', ''),
                coalesce(item->'content', '{}'::jsonb), 'customer',
                CASE WHEN jsonb_typeof(item->'raw') = 'object' THEN item->'raw' END)
        ON CONFLICT (channel, provider_message_id)
            WHERE provider_message_id IS NOT NULL AND direction = 'in'
        DO NOTHING
        RETURNING id INTO mid;
        IF mid IS NULL THEN
            UPDATE conversations SET last_seq = last_seq - 1 WHERE id = conv.id;
            SELECT m.id, m.conversation_id, m.seq, c.contact_id INTO found_row
              FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.channel = item->>'channel' AND m.provider_message_id = item->>'provider_message_id'
               AND m.direction = 'in';
            idx := i; message_id := found_row.id; conversation_id := found_row.conversation_id;
            contact_id := found_row.contact_id; seq := found_row.seq; duplicate := true;
        ELSE
            idx := i; message_id := mid; conversation_id := conv.id; contact_id := cid;
            seq := conv.last_seq; duplicate := false;
        END IF;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END $$;
