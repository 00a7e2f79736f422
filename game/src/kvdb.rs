//! KVDB helpers for game code. The KVDB itself (requests, results, the worker pool and the
//! filesystem and in-memory engines) lives in [`crate::store`].

pub use crate::store::msg::{next_larger_key, KvdbOutput};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_larger_key_appends_nul() {
        assert_eq!(next_larger_key("ab"), "ab\0");
        assert!(next_larger_key("ab").as_str() > "ab");
        assert!(next_larger_key("ab").as_str() < "ab\u{1}");
    }
}
