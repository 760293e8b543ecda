//! Configuration: loading YAML files, checking and compiling them.
