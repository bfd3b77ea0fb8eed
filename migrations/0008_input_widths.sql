-- 0008_input_widths: the stored width of ids, enforced by the schema. gateway.inputs.ID_MAX checks
-- it before a message joins an ingest batch (rejected, never cut: two ids sharing a prefix stay two);
-- these constraints catch whatever bypasses that check. NOT VALID: existing rows are not rescanned.
ALTER TABLE messages ADD CONSTRAINT messages_provider_message_id_width
    CHECK (char_length(provider_message_id) <= 512) NOT VALID;
ALTER TABLE identities ADD CONSTRAINT identities_address_width
    CHECK (char_length(address) <= 512) NOT VALID;
ALTER TABLE contacts ADD CONSTRAINT contacts_external_id_width
    CHECK (char_length(external_id) <= 512) NOT VALID;
