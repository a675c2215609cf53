-- Routing facts of each usage record (tollgate_types::ports::usage::UsageRecord):
-- served_model is the alias that served the request when a fallback did (NULL when the
-- requested alias answered, or nothing did); attempts the upstream attempts made (0: refused
-- before any); hedged is reserved for request hedging (always 0 for now). Existing rows get
-- NULL / 0 / 0.
ALTER TABLE usage_records ADD COLUMN served_model TEXT;
ALTER TABLE usage_records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN hedged INTEGER NOT NULL DEFAULT 0 CHECK (hedged IN (0, 1));
