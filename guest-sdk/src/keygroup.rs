//! Key groups: how keyed records and keyed state are spread over subtasks.
//!
//! Flink's scheme: a key belongs to key group `hash(key) % max_parallelism`,
//! and each subtask owns a contiguous range of key groups. The number of key
//! groups is fixed for the life of a job, so a rescale moves whole key groups
//! between subtasks and every key keeps its state. The hash is XXH3-64: fast,
//! and specified, so it never changes under a job's saved state.

use core::ops::Range;

/// Default number of key groups (the upper bound on any operator's parallelism).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The key group of `key`, in `0..max_parallelism`.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(max_parallelism.max(1))) as u32
}

/// The key groups owned by `subtask` out of `parallelism` subtasks.
pub fn key_group_range(subtask: u32, parallelism: u32, max_parallelism: u32) -> Range<u32> {
    let (s, p, m) = (u64::from(subtask), u64::from(parallelism.max(1)), u64::from(max_parallelism));
    let start = (s * m).div_ceil(p);
    let end = ((s + 1) * m).div_ceil(p);
    start as u32..end as u32
}

/// The subtask that owns `key_group` out of `parallelism` subtasks.
pub fn subtask_for_key_group(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_all_key_groups_and_agree_with_owner() {
        for max in [1, 7, 128, 1000] {
            for p in 1..=max.min(40) {
                let mut next = 0;
                for s in 0..p {
                    let r = key_group_range(s, p, max);
                    assert_eq!(r.start, next, "max {max} p {p} s {s}");
                    assert!(!r.is_empty(), "every subtask owns a group when p <= max");
                    for g in r.clone() {
                        assert_eq!(subtask_for_key_group(g, p, max), s, "max {max} p {p} g {g}");
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn key_group_is_stable_and_in_range() {
        // Pinned: saved state depends on these never changing.
        assert_eq!(key_group(b"hello", 128), key_group(b"hello", 128));
        assert_eq!(key_group(b"", 128), (xxhash_rust::xxh3::xxh3_64(b"") % 128) as u32);
        for i in 0..1000u32 {
            assert!(key_group(&i.to_le_bytes(), 128) < 128);
        }
    }

    #[test]
    fn keys_spread_over_groups() {
        let mut seen = [0u32; 16];
        for i in 0..16_000u32 {
            seen[key_group(format!("word{i}").as_bytes(), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (700..1300).contains(&n)), "{seen:?}");
    }
}
