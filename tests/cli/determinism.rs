//! Byte-identical outputs: forced retrains, kill and resume, golden digests per stage version.
