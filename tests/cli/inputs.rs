//! Malformed YAML, overrides and source data: exit 2 with a message naming file and line/field/index.
