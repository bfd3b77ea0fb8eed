-- 0014_deployments: each `gateway flows deploy` (or POST /api/v1/flows/deploy) that passed validation:
-- which version of every flow and journey is current from then on, the routing file and the journeys'
-- policy. Every process applies the newest one (announced over Redis, re-checked from here), taking
-- the definitions' texts from flow_versions (gateway/flows/deploy.py).
CREATE TABLE deployments (
    id          bigserial PRIMARY KEY,
    manifest    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
