-- Webhook endpoints bound to a client name a client that exists (the clients table came with
-- the tenancy work after the webhooks' migration was written).
ALTER TABLE webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_client FOREIGN KEY (client_id) REFERENCES clients(id);
CREATE INDEX webhook_endpoints_client_id ON webhook_endpoints (client_id);
