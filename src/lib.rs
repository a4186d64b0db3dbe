//! Shared support for vswitch's integration tests and benchmarks: root checks
//! and guards that create uniquely named namespaces and links and always
//! remove them.
