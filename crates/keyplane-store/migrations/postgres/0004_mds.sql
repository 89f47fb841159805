-- FIDO Metadata Service: every verified BLOB imported (header facts), the current entry of each
-- authenticator model (AAGUID) as JSON, display names from unsigned sources (e.g. the community
-- list of passkey providers), and whether a credential's attestation chained to a trusted root.
CREATE TABLE mds_blobs (
    number       BIGINT PRIMARY KEY,
    next_update  TEXT NOT NULL,
    entries      BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    signer       TEXT NOT NULL,
    imported_at  BIGINT NOT NULL
);

CREATE TABLE mds_entries (
    aaguid       TEXT PRIMARY KEY,
    blob_number  BIGINT NOT NULL REFERENCES mds_blobs(number),
    description  TEXT NOT NULL,
    entry        TEXT NOT NULL
);

CREATE TABLE authenticator_names (
    aaguid  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    source       TEXT NOT NULL,
    imported_at  BIGINT NOT NULL
);

ALTER TABLE credentials ADD COLUMN attestation_trusted BIGINT NOT NULL DEFAULT 0;
