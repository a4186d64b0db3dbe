//! vswitch control protocol, client library and the `vswitchctl` admin tool.
