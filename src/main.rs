//! The `smack` binary.
fn main() {}
