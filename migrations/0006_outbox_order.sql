-- 0006_outbox_order: a conversation's outbound messages leave in the order they were written.
-- The sender skips a row while an earlier row of the same conversation is still pending or sending.
CREATE INDEX outbox_open_by_conversation ON outbox (conversation_id, id) WHERE state IN ('pending', 'sending');
