//! Integration tests of the whole quiesce chain live in `tests/`.
