//! Bad storage input.
