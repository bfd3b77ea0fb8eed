-- 0010_outbox_ownership: owned leases, a durable "attempt started" mark, sender heartbeats,
-- status callbacks that arrive before the send's answer, and addresses a provider called invalid.

-- claim_token: who holds the lease (checked on renewal and on finish); claimed_by: which sender
-- process (its heartbeat tells when it died); attempt_started_at: set just before the provider
-- call and cleared when its outcome is recorded, so a row found with it set had an attempt whose
-- outcome is unknown (crash, timeout, dropped connection) and is looked up before it is resent.
ALTER TABLE outbox ADD COLUMN claim_token uuid,
                   ADD COLUMN claimed_by text,
                   ADD COLUMN attempt_started_at timestamptz;
CREATE INDEX outbox_dead_letters ON outbox (updated_at DESC, id DESC) WHERE state = 'dead';

CREATE TABLE outbox_senders (
    name          text PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- A provider can call back before its answer to the send reaches us: the report waits here
-- until the provider id is recorded on the message (then it is applied and deleted).
CREATE TABLE early_statuses (
    id                   bigserial PRIMARY KEY,
    channel              text NOT NULL,
    provider             text,
    provider_message_id  text NOT NULL,
    status               text NOT NULL,
    error_code           text,
    error_message        text,
    recipient            text,
    received_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX early_statuses_key ON early_statuses (channel, provider_message_id);

-- Addresses the provider says cannot receive messages at all (Twilio 21211: not a valid number).
CREATE TABLE undeliverable_addresses (
    channel        text NOT NULL,
    address        text NOT NULL,
    error_code     text NOT NULL,
    error_message  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address)
);
