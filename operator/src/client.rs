//! The HTTP client of the master API, used by frameworks, agents and the CLI.
