//! Integration tests of issue remote (see the module doc of each test).
