//! Holds nothing: the cases live in `pass/` and `fail/`.
