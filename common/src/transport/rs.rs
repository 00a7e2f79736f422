//! Reed-Solomon erasure coding over GF(2^8), producing the same parity as
//! klauspost/reedsolomon v1.9.3 with its default options (the codec kcp-go's FEC uses).
//!
//! The field is GF(2^8) with the generating polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d) and
//! generator 2. The encoding matrix is that library's default: a Vandermonde matrix of
//! `total` rows and `data` columns (row `r`, column `c` holds `r^c`, with `0^0 = 1`),
//! multiplied by the inverse of its top `data` x `data` square, so the top square becomes the
//! identity (data shards pass through unchanged) and every square subset of rows stays
//! invertible. Parity shard `k` is row `data + k` of that matrix applied to the data shards.
//! A missing data shard is rebuilt from the first `data` shards present, in shard order,
//! through the inverse of the matrix rows that made them; the inverse of a matrix is unique,
//! so this gives what the library gives whatever elimination order either side uses.
//!
//! Shards shorter than the working length count as zero-padded: zero bytes contribute
//! nothing to a sum in the field, so the padding is never written out. kcp-go pads its FEC
//! shards with zeros to the longest one of the group, which this matches without copying.

/// GF(2^8) exponentials of the generator 2, doubled in length so a sum of two logarithms
/// (each below 255) indexes it without a modulo.
const EXP: [u8; 512] = build_exp();
/// GF(2^8) logarithms to the base 2; `LOG[0]` is unused.
const LOG: [u8; 256] = build_log();

const fn build_exp() -> [u8; 512] {
    let mut exp = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    // 510 and 511 are only reached by LOG[a] + LOG[b] = 508 at most; keep them consistent.
    exp[510] = exp[0];
    exp[511] = exp[1];
    exp
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

/// Product in GF(2^8).
fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

/// Multiplicative inverse in GF(2^8); `a` must not be zero.
fn inv(a: u8) -> u8 {
    debug_assert!(a != 0);
    EXP[255 - LOG[a as usize] as usize]
}

/// `a` to the power `n`, with `a^0 = 1` (also for `a = 0`).
fn pow(a: u8, n: usize) -> u8 {
    if n == 0 {
        1
    } else if a == 0 {
        0
    } else {
        EXP[(LOG[a as usize] as usize * n) % 255]
    }
}

/// `dst[i] ^= c * src[i]` over the common length, through two 16-entry product tables (one per
/// nibble: multiplication distributes over the XOR of the two halves of a byte).
fn mul_add(c: u8, src: &[u8], dst: &mut [u8]) {
    if c == 0 {
        return;
    }
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    for n in 0..16u8 {
        lo[n as usize] = mul(c, n);
        hi[n as usize] = mul(c, n << 4);
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d ^= lo[(s & 0x0f) as usize] ^ hi[(s >> 4) as usize];
    }
}

/// Inverts the `n` x `n` row-major matrix `m` in place by Gauss-Jordan elimination. `None` if
/// it is singular (which the encoding matrix's square subsets never are).
fn invert(m: &[u8], n: usize) -> Option<Vec<u8>> {
    let w = 2 * n;
    // [m | I], reduced to [I | m^-1].
    let mut a = vec![0u8; n * w];
    for r in 0..n {
        a[r * w..r * w + n].copy_from_slice(&m[r * n..r * n + n]);
        a[r * w + n + r] = 1;
    }
    for col in 0..n {
        let pivot = (col..n).find(|&r| a[r * w + col] != 0)?;
        if pivot != col {
            for c in 0..w {
                a.swap(pivot * w + c, col * w + c);
            }
        }
        let scale = inv(a[col * w + col]);
        for c in 0..w {
            a[col * w + c] = mul(a[col * w + c], scale);
        }
        for r in 0..n {
            let f = a[r * w + col];
            if r != col && f != 0 {
                for c in 0..w {
                    let v = mul(f, a[col * w + c]);
                    a[r * w + c] ^= v;
                }
            }
        }
    }
    let mut out = vec![0u8; n * n];
    for r in 0..n {
        out[r * n..r * n + n].copy_from_slice(&a[r * w + n..r * w + w]);
    }
    Some(out)
}

/// Why a Reed-Solomon call could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsError {
    /// No data or no parity shards, or more than 256 shards in all.
    InvalidShardCount,
    /// Fewer shards present than there are data shards: nothing can be rebuilt.
    TooFewShards,
    /// The slices passed do not match the codec's shard counts.
    ShardMismatch,
}

impl std::fmt::Display for RsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RsError::InvalidShardCount => "invalid Reed-Solomon shard counts",
            RsError::TooFewShards => "too few Reed-Solomon shards to reconstruct",
            RsError::ShardMismatch => "Reed-Solomon shard slices do not match the codec",
        })
    }
}

impl std::error::Error for RsError {}

/// A Reed-Solomon codec for a fixed number of data and parity shards.
#[derive(Debug, Clone)]
pub struct ReedSolomon {
    data: usize,
    parity: usize,
    /// The `data + parity` x `data` encoding matrix, row-major.
    matrix: Vec<u8>,
}

impl ReedSolomon {
    /// The codec for `data_shards` data and `parity_shards` parity shards, with
    /// klauspost/reedsolomon's default encoding matrix. At most 256 shards in all.
    pub fn new(data_shards: usize, parity_shards: usize) -> Result<ReedSolomon, RsError> {
        if data_shards == 0 || parity_shards == 0 || data_shards + parity_shards > 256 {
            return Err(RsError::InvalidShardCount);
        }
        let (d, total) = (data_shards, data_shards + parity_shards);
        let mut vm = vec![0u8; total * d];
        for r in 0..total {
            for c in 0..d {
                vm[r * d + c] = pow(r as u8, c);
            }
        }
        let top_inv = invert(&vm[..d * d], d).ok_or(RsError::InvalidShardCount)?;
        let mut matrix = vec![0u8; total * d];
        for r in 0..total {
            for c in 0..d {
                let mut v = 0u8;
                for k in 0..d {
                    v ^= mul(vm[r * d + k], top_inv[k * d + c]);
                }
                matrix[r * d + c] = v;
            }
        }
        Ok(ReedSolomon {
            data: data_shards,
            parity: parity_shards,
            matrix,
        })
    }

    /// Data shards per group.
    pub fn data_shards(&self) -> usize {
        self.data
    }

    /// Parity shards per group.
    pub fn parity_shards(&self) -> usize {
        self.parity
    }

    /// Adds data shard `index`'s contribution to every parity shard (parity `k` gets the
    /// shard times matrix entry `[data + k][index]` added), over the shard's length: the bytes
    /// past it count as zero padding. Starting
    /// from zeroed parity buffers and adding each data shard once gives the parity of the
    /// group, so a sender can fold each shard in as it goes out instead of keeping them all.
    ///
    /// # Panics
    /// If `index` is not a data shard index or `parity` does not hold one buffer per parity
    /// shard (a caller bug, not input).
    pub fn add_to_parity<P: AsMut<[u8]>>(&self, index: usize, shard: &[u8], parity: &mut [P]) {
        assert!(parity.len() == self.parity);
        for (k, p) in parity.iter_mut().enumerate() {
            self.add_to_parity_shard(k, index, shard, p.as_mut());
        }
    }

    /// [`ReedSolomon::add_to_parity`] for the one parity shard `k`, whose buffer is `dst`.
    ///
    /// # Panics
    /// If `k` or `index` is out of range (a caller bug, not input).
    pub fn add_to_parity_shard(&self, k: usize, index: usize, shard: &[u8], dst: &mut [u8]) {
        assert!(index < self.data && k < self.parity);
        mul_add(self.matrix[(self.data + k) * self.data + index], shard, dst);
    }

    /// Computes the parity shards of `data` (one slice per data shard, each zero-padded to the
    /// parity buffers' lengths) into `parity`, overwriting it.
    pub fn encode<D: AsRef<[u8]>, P: AsMut<[u8]>>(
        &self,
        data: &[D],
        parity: &mut [P],
    ) -> Result<(), RsError> {
        if data.len() != self.data || parity.len() != self.parity {
            return Err(RsError::ShardMismatch);
        }
        for p in parity.iter_mut() {
            p.as_mut().fill(0);
        }
        for (i, d) in data.iter().enumerate() {
            self.add_to_parity(i, d.as_ref(), parity);
        }
        Ok(())
    }

    /// Rebuilds the missing data shards. `shards` holds one entry per shard (data shards
    /// first, then parity), `None` where the shard is missing; present shards count as
    /// zero-padded to the output length. `out` gets one buffer per missing data shard, in shard
    /// order, all of the working length; each is overwritten. Missing parity shards are not
    /// rebuilt.
    pub fn reconstruct_data<S: AsRef<[u8]>, O: AsMut<[u8]>>(
        &self,
        shards: &[Option<S>],
        out: &mut [O],
    ) -> Result<(), RsError> {
        if shards.len() != self.data + self.parity {
            return Err(RsError::ShardMismatch);
        }
        let missing = shards[..self.data].iter().filter(|s| s.is_none()).count();
        if out.len() != missing {
            return Err(RsError::ShardMismatch);
        }
        if missing == 0 {
            return Ok(());
        }
        // The first `data` shards present, in shard order (klauspost's choice).
        let rows: Vec<usize> = (0..shards.len())
            .filter(|&i| shards[i].is_some())
            .take(self.data)
            .collect();
        if rows.len() < self.data {
            return Err(RsError::TooFewShards);
        }
        let d = self.data;
        let mut sub = vec![0u8; d * d];
        for (j, &row) in rows.iter().enumerate() {
            sub[j * d..j * d + d].copy_from_slice(&self.matrix[row * d..row * d + d]);
        }
        // Never singular for this matrix; still an error rather than a panic.
        let dec = invert(&sub, d).ok_or(RsError::TooFewShards)?;
        let missing_idx = (0..d).filter(|&i| shards[i].is_none());
        for (o, i) in out.iter_mut().zip(missing_idx) {
            let o = o.as_mut();
            o.fill(0);
            for (j, &row) in rows.iter().enumerate() {
                if let Some(s) = &shards[row] {
                    mul_add(dec[i * d + j], s.as_ref(), o);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reed_solomon_erasure::galois_8::ReedSolomon as Reference;

    /// A deterministic byte pattern for shard `i`.
    fn shard(i: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|b| (b as u32 * 31 + i as u32 * 97 + (b as u32 >> 3) * 7) as u8)
            .collect()
    }

    #[test]
    fn field_tables_match_the_library() {
        // klauspost/reedsolomon's logTable starts 0, 0, 1, 25, 2, 50, 26, 198 (polynomial 29).
        assert_eq!(&LOG[..8], &[0, 0, 1, 25, 2, 50, 26, 198]);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1);
        }
        assert_eq!(mul(3, 7), 9);
        assert_eq!(pow(2, 8), 0x1d);
    }

    #[test]
    fn published_five_by_five_vector() {
        // The parity klauspost/reedsolomon's own test suite expects of New(5, 5).
        let rs = ReedSolomon::new(5, 5).unwrap();
        let data = [[0u8, 1], [4, 5], [2, 3], [6, 7], [8, 9]];
        let mut parity = [[0u8; 2]; 5];
        rs.encode(&data, &mut parity).unwrap();
        assert_eq!(parity, [[12, 13], [10, 11], [14, 15], [90, 91], [94, 95]]);
    }

    #[test]
    fn parity_matches_reference_crate() {
        let rs = ReedSolomon::new(10, 3).unwrap();
        let reference = Reference::new(10, 3).unwrap();
        let len = 1392;
        let data: Vec<Vec<u8>> = (0..10).map(|i| shard(i, len)).collect();
        let mut parity = vec![vec![0u8; len]; 3];
        rs.encode(&data, &mut parity).unwrap();

        let mut all: Vec<Vec<u8>> = data.clone();
        all.extend(std::iter::repeat_n(vec![0u8; len], 3));
        reference.encode(&mut all).unwrap();
        assert_eq!(&all[10..], &parity[..]);
        // The data shards pass through: the top of the matrix is the identity.
        for r in 0..10 {
            for c in 0..10 {
                assert_eq!(rs.matrix[r * 10 + c], u8::from(r == c));
            }
        }
    }

    #[test]
    fn short_shards_are_zero_padded() {
        let rs = ReedSolomon::new(10, 3).unwrap();
        let reference = Reference::new(10, 3).unwrap();
        let lens = [30, 1394, 7, 100, 1394, 0, 2, 500, 900, 64];
        let data: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| shard(i, l)).collect();
        let mut parity = vec![vec![0xAAu8; 1394]; 3];
        rs.encode(&data, &mut parity).unwrap();

        let mut padded: Vec<Vec<u8>> = data
            .iter()
            .map(|d| {
                let mut p = d.clone();
                p.resize(1394, 0);
                p
            })
            .collect();
        padded.extend(std::iter::repeat_n(vec![0u8; 1394], 3));
        reference.encode(&mut padded).unwrap();
        assert_eq!(&padded[10..], &parity[..]);
    }

    #[test]
    fn reconstruction_matches_reference_for_every_loss_pattern() {
        let rs = ReedSolomon::new(10, 3).unwrap();
        let reference = Reference::new(10, 3).unwrap();
        let len = 257;
        let mut full: Vec<Vec<u8>> = (0..10).map(|i| shard(i, len)).collect();
        full.extend(std::iter::repeat_n(vec![0u8; len], 3));
        reference.encode(&mut full).unwrap();

        let mut patterns = 0;
        for mask in 0u32..(1 << 13) {
            if mask.count_ones() > 3 {
                continue;
            }
            patterns += 1;
            let ours_in: Vec<Option<&[u8]>> = (0..13)
                .map(|i| (mask & (1 << i) == 0).then_some(full[i].as_slice()))
                .collect();
            let missing = (0..10).filter(|&i| mask & (1 << i) != 0).count();
            let mut out = vec![vec![0u8; len]; missing];
            rs.reconstruct_data(&ours_in, &mut out).unwrap();

            let mut theirs: Vec<Option<Vec<u8>>> = (0..13)
                .map(|i| (mask & (1 << i) == 0).then(|| full[i].clone()))
                .collect();
            reference.reconstruct_data(&mut theirs).unwrap();
            let mut o = out.iter();
            for i in (0..10).filter(|&i| mask & (1 << i) != 0) {
                let got = o.next().unwrap();
                assert_eq!(got, &full[i], "mask {mask:#x} shard {i}");
                assert_eq!(Some(got), theirs[i].as_ref(), "mask {mask:#x} shard {i}");
            }
        }
        // 1 + 13 + 78 + 286 patterns of at most three losses.
        assert_eq!(patterns, 378);
    }

    #[test]
    fn too_few_shards_and_bad_arguments() {
        let rs = ReedSolomon::new(10, 3).unwrap();
        let shards: Vec<Option<&[u8]>> = (0..13).map(|i| (i >= 4).then_some(&[1u8][..])).collect();
        let mut out = vec![vec![0u8; 1]; 4];
        assert_eq!(
            rs.reconstruct_data(&shards, &mut out),
            Err(RsError::TooFewShards)
        );
        let mut out = vec![vec![0u8; 1]; 3];
        assert_eq!(
            rs.reconstruct_data(&shards, &mut out),
            Err(RsError::ShardMismatch)
        );
        assert_eq!(
            rs.reconstruct_data(&shards[..12], &mut out),
            Err(RsError::ShardMismatch)
        );
        assert!(ReedSolomon::new(0, 3).is_err());
        assert!(ReedSolomon::new(10, 0).is_err());
        assert!(ReedSolomon::new(200, 57).is_err());
        assert!(ReedSolomon::new(200, 56).is_ok());
    }
}
