//! Command flows against the in-memory DCS and a fake REST API.
