-- Each resident's data key, wrapped (encrypted) by the master key, base64. The key seals the
-- resident's name, phone, email and address in their complaints' events. Deleting a row is
-- erasure: the events stay as they are, but what the key sealed can never be read again.
-- Unlike `events`, rows here are meant to be deleted.
CREATE TABLE resident_keys (
    resident_reference TEXT NOT NULL PRIMARY KEY,
    wrapped_key        TEXT NOT NULL,
    created_at         TEXT NOT NULL
);

-- Residents whose data was erased. Complaints logged before personal data was sealed hold it in
-- plain text; reads mask it for the residents listed here.
CREATE TABLE forgotten_residents (
    resident_reference TEXT NOT NULL PRIMARY KEY,
    forgotten_at       TEXT NOT NULL
);
