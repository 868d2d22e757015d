//! End-to-end tests of the `smack` binary against real processes.
