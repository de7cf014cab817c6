//! Integration tests of issue slurm (see the module doc of each test).
