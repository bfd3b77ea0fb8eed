-- 0015_inboxes: our addresses as data. An inbox is one address on one channel and provider (a Twilio
-- number or Messaging Service, a WhatsApp phone number id, a mailbox, a chat site, the API channel)
-- with its own rules. Each channel has one default inbox standing for the sender in settings
-- (address_from_settings: its address and provider are synced from settings at start).
-- Inbound messages record the inbox they were addressed to; outbound ones the inbox they leave from.

CREATE TABLE inboxes (
    id                     bigserial PRIMARY KEY,
    name                   text NOT NULL UNIQUE,
    channel                text NOT NULL CHECK (channel IN ('sms', 'whatsapp', 'email', 'webchat', 'api')),
    provider               text NOT NULL,
    address                text,
    is_default             boolean NOT NULL DEFAULT false,
    address_from_settings  boolean NOT NULL DEFAULT false,
    flow                   text,
    team_id                bigint REFERENCES teams(id) ON DELETE SET NULL,
    hours                  jsonb,
    out_of_hours_text      text,
    signature              text,
    credentials            bytea,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX inboxes_address ON inboxes (channel, address) WHERE address IS NOT NULL;
CREATE UNIQUE INDEX inboxes_default ON inboxes (channel) WHERE is_default;

INSERT INTO inboxes (name, channel, provider, is_default, address_from_settings) VALUES
    ('SMS', 'sms', 'twilio', true, true),
    ('WhatsApp', 'whatsapp', 'twilio', true, true),
    ('Email', 'email', 'smtp', true, true),
    ('Web chat', 'webchat', 'webchat', true, true),
    ('API', 'api', 'api', true, true);

-- No foreign key: a deleted inbox leaves its history readable (its id stays on the messages).
ALTER TABLE messages ADD COLUMN inbox_id bigint;

-- Ingest as in 0002, plus the inbox: the first of the item's `inbox_addresses` that names an inbox of
-- its channel, else the channel's default inbox (`inbox_matched` false, which the caller logs, unless
-- that default has no address: then it stands for every address, as a channel with one sender does).
DROP FUNCTION gateway_ingest(jsonb);
CREATE FUNCTION gateway_ingest(items jsonb)
RETURNS TABLE (idx int, message_id bigint, conversation_id bigint, contact_id bigint, seq bigint,
               duplicate boolean, inbox_id bigint, inbox_matched boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    item jsonb;
    i int := 0;
    cid bigint;
    conv record;
    mid bigint;
    found_row record;
    ib record;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(items) LOOP
        SELECT m.id, m.conversation_id, m.seq, c.contact_id, m.inbox_id INTO found_row
          FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.channel = item->>'channel' AND m.provider_message_id = item->>'provider_message_id'
           AND m.direction = 'in';
        IF FOUND THEN
            idx := i; message_id := found_row.id; conversation_id := found_row.conversation_id;
            contact_id := found_row.contact_id; seq := found_row.seq; duplicate := true;
            inbox_id := found_row.inbox_id; inbox_matched := true;
            RETURN NEXT;
            i := i + 1;
            CONTINUE;
        END IF;
        SELECT x.id, true AS matched INTO ib
          FROM inboxes x
          JOIN jsonb_array_elements_text(coalesce(item->'inbox_addresses', '[]'::jsonb))
               WITH ORDINALITY AS a(address, n) ON a.address = x.address
         WHERE x.channel = item->>'channel'
         ORDER BY a.n LIMIT 1;
        IF NOT FOUND THEN
            SELECT x.id, x.address IS NULL AS matched INTO ib FROM inboxes x
             WHERE x.channel = item->>'channel' AND x.is_default;
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
                              author_type, raw, inbox_id)
        VALUES (conv.id, conv.last_seq, conv.current_episode_id, 'in', item->>'channel',
                item->>'provider', item->>'provider_message_id', item->>'address',
                item->>'recipient', coalesce(item->>'body', ''),
                coalesce(item->'content', '{}'::jsonb), 'customer',
                CASE WHEN jsonb_typeof(item->'raw') = 'object' THEN item->'raw' END, ib.id)
        ON CONFLICT (channel, provider_message_id)
            WHERE provider_message_id IS NOT NULL AND direction = 'in'
        DO NOTHING
        RETURNING id INTO mid;
        IF mid IS NULL THEN
            UPDATE conversations SET last_seq = last_seq - 1 WHERE id = conv.id;
            SELECT m.id, m.conversation_id, m.seq, c.contact_id, m.inbox_id INTO found_row
              FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.channel = item->>'channel' AND m.provider_message_id = item->>'provider_message_id'
               AND m.direction = 'in';
            idx := i; message_id := found_row.id; conversation_id := found_row.conversation_id;
            contact_id := found_row.contact_id; seq := found_row.seq; duplicate := true;
            inbox_id := found_row.inbox_id; inbox_matched := true;
        ELSE
            idx := i; message_id := mid; conversation_id := conv.id; contact_id := cid;
            seq := conv.last_seq; duplicate := false; inbox_id := ib.id;
            inbox_matched := coalesce(ib.matched, false);
        END IF;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END $$;
