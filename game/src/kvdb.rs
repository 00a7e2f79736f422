//! KVDB helpers for game code. The KVDB itself (requests, results, the worker pool and the
//! filesystem and in-memory engines) lives in [`crate::store`].

pub use crate::store::KvdbOutput;

/// The smallest key greater than `key` (GoWorld's `NextLargerKey`): `key` followed by NUL.
/// Useful as the exclusive end of a range that must include `key`.
pub fn next_larger_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 1);
    k.push_str(key);
    k.push('\0');
    k
}

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
