"""The dashboard: server-rendered pages where a team reads its traces, signed in as a person."""
