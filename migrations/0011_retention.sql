-- 0011_retention: data retention (gateway/retention.py). An expired message stays in its thread as
-- a tombstone (place, direction, channel, times and status kept; content gone) marked expired_at;
-- each retention policy walks forward from its cursor over the existing created_at indexes, so no
-- big index is built on existing installs. Blobs are aged by their last use: storing a file that is
-- already there refreshes created_at (gateway/http/attachments.py, gateway/email_intake.py).
ALTER TABLE messages ADD COLUMN expired_at timestamptz;

CREATE TABLE retention_cursors (
    name        text PRIMARY KEY,            -- "messages", "messages:email", "events", "audit", "blobs"
    position    timestamptz NOT NULL,        -- everything before it was handled (or held back, see below)
    last_id     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX blobs_created ON blobs (created_at);
