//! Live processes: stopped with ptrace, read through /proc.
