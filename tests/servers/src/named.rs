//! BIND (named) with rndc on loopback ports: filled in by the DNS work.
