-- Source table for the des-migrate trial (docker compose): six files, all
-- older than the archive age, none archived yet. The paths are as the
-- des-migrate container sees ./example_data/input.
CREATE TABLE IF NOT EXISTS source_files (
  uid text PRIMARY KEY,
  created_at timestamptz NOT NULL,
  file_location text NOT NULL,
  size_bytes bigint NOT NULL,
  archived boolean NOT NULL DEFAULT false
);
INSERT INTO source_files (uid, created_at, file_location, size_bytes, archived) VALUES
  ('doc-0001', '2024-01-01T08:15:00Z', '/data/input/note-0001.txt', 288, false),
  ('doc-0002', '2024-01-01T09:30:00Z', '/data/input/note-0002.txt', 190, false),
  ('1001', '2024-01-01T23:59:59Z', '/data/input/invoice-1001.csv', 44, false),
  ('1002', '2024-01-02T00:00:01Z', '/data/input/invoice-1002.csv', 32, false),
  ('img-7', '2024-01-02T12:00:00Z', '/data/input/readme-7.md', 55, false),
  ('log-42', '2024-01-02T18:45:00Z', '/data/input/app-42.log', 1960, false)
ON CONFLICT (uid) DO NOTHING;
