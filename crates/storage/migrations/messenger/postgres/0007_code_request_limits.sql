-- Abuse limits on verification codes: each code request also records the
-- client's address (as the messenger saw it; NULL when unknown) and the
-- number's prefix (country code and carrier range), so that requests are
-- limited per client address, per prefix and in total, not only per
-- number. Rows are purged after 24 hours.
ALTER TABLE code_requests ADD COLUMN client TEXT;
ALTER TABLE code_requests ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
CREATE INDEX code_requests_by_client ON code_requests (client, at);
CREATE INDEX code_requests_by_prefix ON code_requests (prefix, at);
CREATE INDEX code_requests_by_at ON code_requests (at);
