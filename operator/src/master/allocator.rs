//! The DRF allocator.
