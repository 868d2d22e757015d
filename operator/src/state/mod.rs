//! The state store: where the master and frameworks keep what must survive a
//! restart.
