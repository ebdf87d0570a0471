//! Splitting a `command` string like a shell would (to be written).
