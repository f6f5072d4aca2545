-- The delivery log is bounded (BERTH_WEBHOOKS_LOG_KEEP_S): the notices service deletes an
-- event's deliveries to an endpoint once all of them have finished and the last finished
-- before the cut-off. These indexes find the oldest finished rows and an event's rows to
-- an endpoint without reading the whole log.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
    WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id, endpoint_id);
