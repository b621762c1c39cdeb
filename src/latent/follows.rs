//! Follow weights: which items came next after which, in the memory's own samples — the
//! item-to-item signal a scoring option (`follows` in the manifest, beyond the paper) adds to
//! L2D's scores.
//!
//! Each memory sample (history → target) credits every pair (history item → target) with
//! [`DECAY`]`^k`, `k` the item's place back from the history's newest item (0 for the newest),
//! over the prompt's window ([`crate::data::prompt::MAX_HISTORY`] items). A query with that window
//! `h_0` (newest), `h_1`, … gives item `j` the feature
//! `f(j) = ln(1 + Σ_k DECAY^k · W[h_k → j])`, and its score (smaller is better) becomes
//! `score(j) − λ·f(j)`, λ the manifest's weight (chosen on valid by `l2d choose`). It is the
//! classic item-to-item co-occurrence recommender (weighted by recency in the window), fused
//! with the latent-space score.
//!
//! Stored (the blob's follows section) per source item, in catalog order: a LEB128 count of
//! pairs, then each pair as the LEB128 gap of its target from the previous target (the first
//! from 0; targets ascending) and one byte `level` standing for the weight
//! `exp(level / LEVELS_PER_NAT) − 1`. A pair whose weight rounds to level 0 is not stored;
//! [`Follows::within`] drops the weakest levels until the section fits a byte budget.

use std::collections::HashMap;

use crate::data::catalog::ItemIndex;
use crate::data::prompt::{truncate_history, MAX_HISTORY};

/// Weight of a history item per place back from the newest (the newest counts 1): halving,
/// the same for every dataset.
pub const DECAY: f32 = 0.5;
/// Stored weight levels per nat of `ln(1 + weight)`: steps of about 6 % in the weight, up to
/// about 8·10⁶ (level 255).
pub const LEVELS_PER_NAT: f32 = 16.0;

/// The follows file's name in a model directory: what a page's first tier ranks with before
/// any model has loaded ([`FollowsFile`]).
pub const FOLLOWS_FILE: &str = "follows.bin";
const FILE_MAGIC: &[u8; 8] = b"L2DFOLW\0";
const FILE_VERSION: u32 = 1;
/// Bytes before the follows file's popularity counts.
const FILE_HEADER: usize = 64;

/// Why a follows section was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowsError {
    #[error("follows section truncated: {what} of source item {item} at byte {offset}")]
    Truncated {
        what: &'static str,
        item: usize,
        offset: usize,
    },
    #[error(
        "follows section: source item {item} has target {target}, past the catalog's {items} items"
    )]
    TargetOutOfRange {
        item: usize,
        target: u64,
        items: usize,
    },
    #[error("follows section: source item {item} lists target {target} twice or out of order")]
    Unordered { item: usize, target: u64 },
    #[error("follows section: source item {item} has a pair at level 0 (never stored)")]
    ZeroLevel { item: usize },
    #[error("follows section: {extra} bytes after the last source item")]
    TrailingBytes { extra: usize },
    #[error("follows: sample {sample} names item {item}, past the catalog's {items} items")]
    SampleOutOfRange {
        sample: usize,
        item: ItemIndex,
        items: usize,
    },
    #[error("follows file: {field} is {found}, expected {expected}")]
    FileHeader {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("follows file: popularity counts {found} items, expected {expected}")]
    PopularityCount { expected: usize, found: usize },
}

/// The follow weights of a catalog: per source item, its targets (ascending) and their weight
/// levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follows {
    /// `offsets[a]..offsets[a + 1]` are source `a`'s pairs in `targets` and `levels`.
    offsets: Vec<usize>,
    targets: Vec<ItemIndex>,
    levels: Vec<u8>,
}

/// The stored level of a weight ≥ 0 (0 = too small to store).
fn level_of(weight: f64) -> u8 {
    (weight.ln_1p() * f64::from(LEVELS_PER_NAT))
        .round()
        .clamp(0.0, 255.0) as u8
}

/// The weight a stored level stands for (computed in f64 and rounded once, so that a page's
/// JavaScript, which has only f64 `Math.expm1`, finds the same f32).
pub fn weight_of(level: u8) -> f32 {
    (f64::from(level) / f64::from(LEVELS_PER_NAT)).exp_m1() as f32
}

/// `ln(1 + sum)` of an f32 sum, in f64 rounded once (as a page's JavaScript computes it).
fn feature_of(sum: f32) -> f32 {
    f64::from(sum).ln_1p() as f32
}

impl Follows {
    /// The follow weights of samples `(history, target)` (history oldest first) over a catalog
    /// of `n_items`.
    pub fn from_samples<'a>(
        samples: impl IntoIterator<Item = (&'a [ItemIndex], ItemIndex)>,
        n_items: usize,
    ) -> Result<Self, FollowsError> {
        let mut pairs: HashMap<(ItemIndex, ItemIndex), f64> = HashMap::new();
        for (sample, (history, target)) in samples.into_iter().enumerate() {
            let window = truncate_history(history);
            if let Some(&item) = window
                .iter()
                .chain([&target])
                .find(|&&i| i as usize >= n_items)
            {
                return Err(FollowsError::SampleOutOfRange {
                    sample,
                    item,
                    items: n_items,
                });
            }
            let mut weight = 1.0f64;
            for &source in window.iter().rev() {
                *pairs.entry((source, target)).or_default() += weight;
                weight *= f64::from(DECAY);
            }
        }
        let mut pairs: Vec<((ItemIndex, ItemIndex), u8)> = pairs
            .into_iter()
            .map(|(pair, weight)| (pair, level_of(weight)))
            .filter(|&(_, level)| level > 0)
            .collect();
        pairs.sort_unstable();
        Ok(Self::from_sorted(&pairs, n_items))
    }

    /// From `((source, target), level)` pairs sorted by source, then target.
    fn from_sorted(pairs: &[((ItemIndex, ItemIndex), u8)], n_items: usize) -> Self {
        let mut offsets = Vec::with_capacity(n_items + 1);
        offsets.push(0);
        let mut at = 0;
        for source in 0..n_items {
            while at < pairs.len() && pairs[at].0 .0 as usize == source {
                at += 1;
            }
            offsets.push(at);
        }
        Follows {
            offsets,
            targets: pairs.iter().map(|p| p.0 .1).collect(),
            levels: pairs.iter().map(|p| p.1).collect(),
        }
    }

    /// Catalog size.
    pub fn n_items(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Stored pairs.
    pub fn pairs(&self) -> usize {
        self.targets.len()
    }

    /// Source `item`'s (target, weight) pairs, targets ascending.
    pub fn of(&self, item: ItemIndex) -> impl Iterator<Item = (ItemIndex, f32)> + '_ {
        let range = self.offsets[item as usize]..self.offsets[item as usize + 1];
        self.targets[range.clone()]
            .iter()
            .copied()
            .zip(self.levels[range].iter().map(|&l| weight_of(l)))
    }

    /// Each followed item's `f(j)` for a query whose history (oldest first) is `history`
    /// (see the module docs): the items with `f(j) > 0`, in no particular order.
    pub fn features(&self, history: &[ItemIndex]) -> Vec<(ItemIndex, f32)> {
        let mut sums: HashMap<ItemIndex, f32> = HashMap::new();
        let mut decay = 1.0f32;
        for &source in truncate_history(history).iter().rev() {
            if (source as usize) < self.n_items() {
                for (target, w) in self.of(source) {
                    *sums.entry(target).or_default() += decay * w;
                }
            }
            decay *= DECAY;
        }
        sums.into_iter()
            .map(|(j, sum)| (j, feature_of(sum)))
            .collect()
    }

    /// Subtracts `weight · f(j)` from each item's score `scores[j]` for a query whose history
    /// (oldest first) is `history` (items past `scores` are ignored).
    pub fn apply(&self, history: &[ItemIndex], weight: f32, scores: &mut [f32]) {
        if weight == 0.0 {
            return;
        }
        for (target, feature) in self.features(history) {
            if let Some(score) = scores.get_mut(target as usize) {
                *score -= weight * feature;
            }
        }
    }

    /// The item-to-item baseline on its own: items by `f(j)` for `history`, then by
    /// `popularity` (e.g. train-target counts), then by index; the first `k`.
    pub fn ranking(&self, history: &[ItemIndex], popularity: &[u32], k: usize) -> Vec<ItemIndex> {
        let mut followed = self.features(history);
        followed.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(popularity_of(popularity, b.0).cmp(&popularity_of(popularity, a.0)))
                .then(a.0.cmp(&b.0))
        });
        followed.truncate(k);
        let mut ranking: Vec<ItemIndex> = followed.iter().map(|&(j, _)| j).collect();
        if ranking.len() < k {
            let listed: std::collections::HashSet<ItemIndex> = ranking.iter().copied().collect();
            let rest = crate::data::catalog::popularity_ranking(popularity, k + ranking.len());
            ranking.extend(
                rest.into_iter()
                    .filter(|j| !listed.contains(j))
                    .take(k - ranking.len()),
            );
        }
        ranking
    }

    /// The section's bytes (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(0)
    }

    /// The bytes of the pairs at `min_level` or above.
    fn encode(&self, min_level: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for source in 0..self.n_items() {
            let range = self.offsets[source]..self.offsets[source + 1];
            let kept = self.levels[range.clone()]
                .iter()
                .filter(|&&l| l >= min_level)
                .count();
            put_leb128(&mut out, kept as u64);
            let mut previous = 0u64;
            for (&target, &level) in self.targets[range.clone()].iter().zip(&self.levels[range]) {
                if level >= min_level {
                    put_leb128(&mut out, u64::from(target) - previous);
                    out.push(level);
                    previous = u64::from(target);
                }
            }
        }
        out
    }

    /// Parses a follows section for a catalog of `n_items`.
    pub fn from_bytes(bytes: &[u8], n_items: usize) -> Result<Self, FollowsError> {
        let mut at = 0;
        let mut pairs = Vec::new();
        for item in 0..n_items {
            let truncated = |what, offset| FollowsError::Truncated { what, item, offset };
            let count = get_leb128(bytes, &mut at).ok_or(truncated("pair count", at))?;
            let mut previous: Option<u64> = None;
            for _ in 0..count {
                let gap = get_leb128(bytes, &mut at).ok_or(truncated("target gap", at))?;
                let target = previous.unwrap_or(0).saturating_add(gap);
                if previous.is_some() && gap == 0 {
                    return Err(FollowsError::Unordered { item, target });
                }
                if target >= n_items as u64 {
                    return Err(FollowsError::TargetOutOfRange {
                        item,
                        target,
                        items: n_items,
                    });
                }
                let level = *bytes.get(at).ok_or(truncated("weight level", at))?;
                at += 1;
                if level == 0 {
                    return Err(FollowsError::ZeroLevel { item });
                }
                pairs.push(((item as ItemIndex, target as ItemIndex), level));
                previous = Some(target);
            }
        }
        if at != bytes.len() {
            return Err(FollowsError::TrailingBytes {
                extra: bytes.len() - at,
            });
        }
        Ok(Self::from_sorted(&pairs, n_items))
    }

    /// These follow weights without their weakest levels, so that the section takes at most
    /// `max_bytes` (the smallest level cut that fits; the empty section when none does).
    pub fn within(&self, max_bytes: usize) -> Self {
        // Bytes only fall as the cut rises: the lowest cut that fits, by bisection.
        let (mut lo, mut hi) = (1u16, 256u16);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.encode(mid as u8).len() <= max_bytes {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let cut = lo;
        let kept: Vec<((ItemIndex, ItemIndex), u8)> = (0..self.n_items())
            .flat_map(|source| {
                (self.offsets[source]..self.offsets[source + 1])
                    .filter(|&p| u16::from(self.levels[p]) >= cut)
                    .map(move |p| ((source as ItemIndex, self.targets[p]), self.levels[p]))
            })
            .collect();
        Self::from_sorted(&kept, self.n_items())
    }
}

/// The follows file ([`FOLLOWS_FILE`]): the follow weights and each item's popularity (its
/// train-target count), all a page needs to rank without a model — the item-to-item baseline
/// of [`Follows::ranking`], which `www/l2d-follows.js` reimplements in plain JavaScript.
///
/// Little-endian: the magic `L2DFOLW\0`, a `u32` version (1), a `u32` item count, the `u32`
/// window ([`MAX_HISTORY`]), the `f32` [`DECAY`] and `f32` [`LEVELS_PER_NAT`] (so the page
/// takes the rule's constants from the file), the sha256 of the items parts (32 bytes), a `u32`
/// byte length and that many bytes of LEB128 popularity counts in catalog order, then the
/// follows section (as in the blob) to the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowsFile {
    /// sha256 of the items parts, concatenated in order (as in the blobs' header).
    pub items_sha256: [u8; 32],
    /// Per item, in catalog order: its train-target count.
    pub popularity: Vec<u32>,
    pub follows: Follows,
}

impl FollowsFile {
    /// The popularity counts as stored (LEB128, catalog order).
    fn popularity_bytes(&self) -> Vec<u8> {
        let mut popularity = Vec::new();
        for &count in &self.popularity {
            put_leb128(&mut popularity, u64::from(count));
        }
        popularity
    }

    /// This file less its weakest follow weights, so that it takes at most `max_bytes`
    /// ([`Follows::within`] given what the header, the popularity counts and an empty pair
    /// list per item leave; the pair section's own counts are then counted again, so the cut
    /// keeps up to one byte per item in reserve, as `l2d` has always written the file).
    pub fn within(self, max_bytes: usize) -> Self {
        let fixed = FILE_HEADER + self.popularity_bytes().len() + self.follows.n_items();
        Self {
            follows: self.follows.within(max_bytes.saturating_sub(fixed)),
            ..self
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let popularity = self.popularity_bytes();
        let mut out = Vec::with_capacity(FILE_HEADER + popularity.len());
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&FILE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.popularity.len() as u32).to_le_bytes());
        out.extend_from_slice(&(MAX_HISTORY as u32).to_le_bytes());
        out.extend_from_slice(&DECAY.to_le_bytes());
        out.extend_from_slice(&LEVELS_PER_NAT.to_le_bytes());
        out.extend_from_slice(&self.items_sha256);
        out.extend_from_slice(&(popularity.len() as u32).to_le_bytes());
        out.extend_from_slice(&popularity);
        out.extend_from_slice(&self.follows.to_bytes());
        out
    }

    /// Parses a follows file, refusing one whose rule constants differ from this build's.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FollowsError> {
        let header =
            |field: &'static str, expected: String, found: String| FollowsError::FileHeader {
                field,
                expected,
                found,
            };
        if bytes.len() < FILE_HEADER {
            return Err(header(
                "length",
                format!("at least {FILE_HEADER} bytes"),
                format!("{} bytes", bytes.len()),
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let f32_at = |at: usize| f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        if &bytes[..8] != FILE_MAGIC {
            return Err(header(
                "magic",
                "L2DFOLW\\0".into(),
                format!("{:?}", String::from_utf8_lossy(&bytes[..8])),
            ));
        }
        let checks = [
            ("version", FILE_VERSION.to_string(), u32_at(8).to_string()),
            ("window", MAX_HISTORY.to_string(), u32_at(16).to_string()),
            ("decay", DECAY.to_string(), f32_at(20).to_string()),
            (
                "levels per nat",
                LEVELS_PER_NAT.to_string(),
                f32_at(24).to_string(),
            ),
        ];
        for (field, expected, found) in checks {
            if expected != found {
                return Err(header(field, expected, found));
            }
        }
        let n_items = u32_at(12) as usize;
        let items_sha256: [u8; 32] = bytes[28..60].try_into().unwrap();
        let length = u32_at(60) as usize;
        let section = bytes
            .get(FILE_HEADER..FILE_HEADER + length)
            .ok_or_else(|| {
                header(
                    "popularity length",
                    format!("at most {}", bytes.len() - FILE_HEADER),
                    length.to_string(),
                )
            })?;
        let mut at = 0;
        let mut popularity = Vec::with_capacity(n_items);
        while at < section.len() {
            let count = get_leb128(section, &mut at)
                .filter(|&c| c <= u64::from(u32::MAX))
                .ok_or(FollowsError::Truncated {
                    what: "popularity count",
                    item: popularity.len(),
                    offset: FILE_HEADER + at,
                })?;
            popularity.push(count as u32);
        }
        if popularity.len() != n_items {
            return Err(FollowsError::PopularityCount {
                expected: n_items,
                found: popularity.len(),
            });
        }
        let follows = Follows::from_bytes(&bytes[FILE_HEADER + length..], n_items)?;
        Ok(Self {
            items_sha256,
            popularity,
            follows,
        })
    }

    /// The item-to-item baseline for `history` (oldest first): the first `k` items of
    /// [`Follows::ranking`] that are not in `exclude`.
    pub fn recommend(
        &self,
        history: &[ItemIndex],
        k: usize,
        exclude: &[ItemIndex],
    ) -> Vec<ItemIndex> {
        let mut ranking = self
            .follows
            .ranking(history, &self.popularity, k + exclude.len());
        ranking.retain(|j| !exclude.contains(j));
        ranking.truncate(k);
        ranking
    }
}

fn popularity_of(popularity: &[u32], item: ItemIndex) -> u32 {
    popularity.get(item as usize).copied().unwrap_or(0)
}

fn put_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A LEB128 value at `*at` (advanced past it); `None` when the bytes end first or it
/// overflows 64 bits.
fn get_leb128(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_the_window_and_round_trip() {
        // (samples, source, expected (target, weight) pairs before rounding)
        type Samples = Vec<(Vec<ItemIndex>, ItemIndex)>;
        type Case = (Samples, ItemIndex, Vec<(ItemIndex, f64)>);
        let cases: Vec<Case> = vec![
            (vec![(vec![0], 1)], 0, vec![(1, 1.0)]),
            (vec![(vec![0, 2], 1)], 0, vec![(1, 0.5)]),
            (vec![(vec![0, 2], 1), (vec![0], 1)], 0, vec![(1, 1.5)]),
            (
                vec![(vec![0, 2], 1), (vec![2], 3)],
                2,
                vec![(1, 1.0), (3, 1.0)],
            ),
            // Eleven items back: outside the prompt's window, no credit.
            (
                (vec![(vec![0, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4], 1)]),
                0,
                vec![],
            ),
            (vec![(vec![], 1)], 0, vec![]),
        ];
        for (samples, source, want) in cases {
            let follows =
                Follows::from_samples(samples.iter().map(|(h, t)| (h.as_slice(), *t)), 5).unwrap();
            let got: Vec<(ItemIndex, f32)> = follows.of(source).collect();
            assert_eq!(got.len(), want.len(), "{samples:?}");
            for ((t, w), (wt, ww)) in got.iter().zip(&want) {
                assert_eq!(t, wt, "{samples:?}");
                // Stored to the nearest level: half a level of ln(1 + weight) at most.
                let error = (f64::from(*w).ln_1p() - ww.ln_1p()).abs();
                assert!(
                    error <= 0.5 / f64::from(LEVELS_PER_NAT),
                    "{samples:?}: {w} vs {ww}"
                );
            }
            let back = Follows::from_bytes(&follows.to_bytes(), 5).unwrap();
            assert_eq!(back, follows);
        }
    }

    #[test]
    fn scores_fall_by_the_weighted_feature() {
        let samples = [(vec![0u32, 1], 2u32), (vec![1], 3)];
        let follows =
            Follows::from_samples(samples.iter().map(|(h, t)| (h.as_slice(), *t)), 4).unwrap();
        // (history, weight, expected score change per item)
        let w = |l: f64| f64::from(weight_of(level_of(l)));
        let cases = [
            (vec![1u32], 1.0, [0.0, 0.0, w(1.0).ln_1p(), w(1.0).ln_1p()]),
            (vec![0], 2.0, [0.0, 0.0, 2.0 * w(0.5).ln_1p(), 0.0]),
            (
                vec![0, 1],
                1.0,
                [0.0, 0.0, (w(1.0) + 0.5 * w(0.5)).ln_1p(), w(1.0).ln_1p()],
            ),
            (
                vec![1, 0],
                1.0,
                [
                    0.0,
                    0.0,
                    (w(0.5) + 0.5 * w(1.0)).ln_1p(),
                    (0.5 * w(1.0)).ln_1p(),
                ],
            ),
            (vec![1], 0.0, [0.0; 4]),
            (vec![9], 1.0, [0.0; 4]),
        ];
        for (history, weight, want) in cases {
            let mut scores = vec![10f32; 4];
            follows.apply(&history, weight as f32, &mut scores);
            for (got, want) in scores.iter().zip(want) {
                assert!(
                    (f64::from(10.0 - got) - want).abs() < 1e-5,
                    "{history:?}: {scores:?}"
                );
            }
        }
    }

    #[test]
    fn the_baseline_ranks_by_feature_then_popularity() {
        let samples = [(vec![0u32], 2u32), (vec![0], 2), (vec![0], 3), (vec![1], 4)];
        let follows =
            Follows::from_samples(samples.iter().map(|(h, t)| (h.as_slice(), *t)), 6).unwrap();
        let popularity = [0u32, 1, 0, 0, 2, 5];
        // (history, k, expected ranking)
        let cases = [
            (vec![0u32], 4, vec![2u32, 3, 5, 4]),
            (vec![0], 1, vec![2]),
            (vec![1], 3, vec![4, 5, 1]),
            (vec![], 3, vec![5, 4, 1]),
            (vec![1, 0], 6, vec![2, 3, 4, 5, 1, 0]),
        ];
        for (history, k, want) in cases {
            assert_eq!(
                follows.ranking(&history, &popularity, k),
                want,
                "{history:?}"
            );
        }
    }

    #[test]
    fn bad_sections_are_named() {
        // 2 items: item 0 → [1 at level 16], item 1 → none.
        let good = vec![1u8, 1, 16, 0];
        assert!(Follows::from_bytes(&good, 2).is_ok());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 1], "weight level"),
            (vec![1], "target gap"),
            (vec![1, 1, 16], "pair count"),
            (vec![1, 2, 16, 0], "past the catalog"),
            (vec![2, 1, 16, 0, 16, 0], "twice or out of order"),
            (vec![1, 1, 0, 0], "level 0"),
            (vec![1, 1, 16, 0, 0], "1 bytes after"),
            (vec![0xff; 12], "pair count"),
        ];
        for (bytes, want) in cases {
            let err = Follows::from_bytes(&bytes, 2).unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
        let err = Follows::from_samples([([0u32].as_slice(), 7u32)], 2).unwrap_err();
        assert!(err.to_string().contains("sample 0 names item 7"), "{err}");
    }

    #[test]
    fn the_follows_file_round_trips_and_names_what_is_wrong() {
        let samples = [(vec![0u32], 2u32), (vec![0], 2), (vec![0], 3), (vec![1], 4)];
        let follows =
            Follows::from_samples(samples.iter().map(|(h, t)| (h.as_slice(), *t)), 6).unwrap();
        let file = FollowsFile {
            items_sha256: [7; 32],
            popularity: vec![0, 1, 0, 300, 2, 5],
            follows,
        };
        let good = file.to_bytes();
        assert_eq!(FollowsFile::from_bytes(&good).unwrap(), file);
        // Cut to a byte budget: the whole file fits, or only its pairs are gone.
        let empty = file.clone().within(0);
        assert_eq!(empty.follows.pairs(), 0);
        assert_eq!(empty.popularity, file.popularity);
        for max in [good.len(), good.len() - 1, empty.to_bytes().len()] {
            let cut = file.clone().within(max).to_bytes().len();
            assert!(cut <= max, "{max}: {cut}");
        }
        let items = file.popularity.len();
        assert_eq!(file.clone().within(good.len() + items), file);
        // (what is changed, expected error)
        type Edit = fn(&mut Vec<u8>);
        let cases: [(Edit, &str); 8] = [
            (|b| b.truncate(10), "length is 10 bytes"),
            (|b| b[0] = b'X', "magic"),
            (|b| b[8] = 2, "version is 2, expected 1"),
            (|b| b[16] = 11, "window is 11, expected 10"),
            (
                |b| b[20..24].copy_from_slice(&0.25f32.to_le_bytes()),
                "decay is 0.25",
            ),
            (|b| b[12] = 7, "popularity counts 6 items, expected 7"),
            (|b| b[60] = 200, "popularity length"),
            (|b| b.push(0), "1 bytes after"),
        ];
        for (edit, want) in cases {
            let mut bytes = good.clone();
            edit(&mut bytes);
            let err = FollowsFile::from_bytes(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // (history, k, exclude, expected)
        let cases = [
            (vec![0u32], 3, vec![0u32], vec![2u32, 3, 5]),
            (vec![0], 3, vec![2], vec![3, 5, 4]),
            (vec![], 2, vec![3], vec![5, 4]),
        ];
        for (history, k, exclude, want) in cases {
            assert_eq!(file.recommend(&history, k, &exclude), want, "{history:?}");
        }
    }

    #[test]
    fn within_drops_the_weakest_levels_first() {
        let samples: Vec<(Vec<ItemIndex>, ItemIndex)> = (0..200u32)
            .map(|i| (vec![i % 7, (i * 3) % 11], (i * 5) % 13))
            .collect();
        let follows =
            Follows::from_samples(samples.iter().map(|(h, t)| (h.as_slice(), *t)), 13).unwrap();
        let full = follows.to_bytes().len();
        for max in [full, full - 1, full / 2, 13, 0] {
            let cut = follows.within(max);
            let bytes = cut.to_bytes().len();
            assert!(bytes <= max || cut.pairs() == 0, "{max}: {bytes}");
            // Every pair at the weakest kept level or above is kept, and one level lower
            // would not fit.
            if let Some(weakest) = cut.levels.iter().min().copied() {
                let at_least = follows.levels.iter().filter(|&&l| l >= weakest).count();
                assert_eq!(cut.pairs(), at_least, "{max}");
                let lower = follows
                    .levels
                    .iter()
                    .copied()
                    .filter(|&l| l < weakest)
                    .max();
                assert!(lower.is_none_or(|l| follows.encode(l).len() > max), "{max}");
            }
            if max == full {
                assert_eq!(cut, follows);
            }
        }
    }
}
