-- Sample tables for deploy/docker-compose.yml, loaded once when the
-- PostgreSQL volume is new. The daemon snapshots these rows, then follows
-- every change.
CREATE TABLE users (
    external_id text PRIMARY KEY,
    plan        text,
    score       integer
);

CREATE TABLE devices (
    player_id        text PRIMARY KEY,
    user_external_id text REFERENCES users (external_id)
);

INSERT INTO users VALUES
    ('alice', 'free', 10),
    ('bob',   'pro',  42);

-- Devices start empty: a device exists in OneSignal before a row can link
-- it to a user (docker-compose.yml shows how to register one with the
-- emulator, as an app's SDK would).
