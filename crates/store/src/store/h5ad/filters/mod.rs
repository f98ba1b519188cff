//! HDF5 filters that libhdf5 does not build in, decoded and encoded in Rust.
//!
//! hdf5plugin (and anndata-rs, which writes blosc-zstd by default) store AnnData arrays with
//! registered third-party filters: blosc (32001), lz4 (32004), bitshuffle (32008, alone or
//! with lz4/zstd), zstd (32015) and bzip2 (307). Each has a module here with one job: turn
//! a stored chunk into its bytes and back, with the `cd_values` layout its authors
//! document. Two places use them:
//! * the raw-chunk path ([`super::chunks`]) runs them as steps of a chunk pipeline on rayon
//!   threads, outside HDF5's global lock;
//! * [`plugin`] registers them with libhdf5 (`H5Zregister`), so everything that reads or
//!   writes through HDF5's own pipeline (obs/var columns, re-encoded layers, h5ad -> zarr,
//!   `inspect`) works the same, and `H5Ocopy` keeps raw chunks as they are.
//!
//! A filter that is neither built in nor here is named by id (and name, from the HDF
//! Group's registered-filter list) in a clear error, never reported as corruption.

mod bitshuffle;
mod blosc;
mod bzip2;
mod lz4;
pub(crate) mod plugin;
mod zstd;

use hdf5::filters::Filter;

pub(crate) use self::bitshuffle::Bitshuffle;
pub(crate) use self::blosc::Blosc;
pub(crate) use self::bzip2::Bzip2;
pub(crate) use self::lz4::Lz4;
pub(crate) use self::zstd::Zstd;

pub(crate) const BZIP2_ID: i32 = 307;
pub(crate) const BLOSC_ID: i32 = 32001;
pub(crate) const LZ4_ID: i32 = 32004;
pub(crate) const BITSHUFFLE_ID: i32 = 32008;
pub(crate) const ZSTD_ID: i32 = 32015;

/// Largest chunk HDF5 can store (4 GiB): a decoded size above it is damage.
pub(crate) const MAX_CHUNK_BYTES: usize = u32::MAX as usize;

/// Why a codec could not do its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// The stored bytes do not decode (truncated, damaged, or the wrong size).
    Corrupt,
    /// The filter's parameters (`cd_values`) are not usable.
    Params(&'static str),
}

/// Reads a decoder's whole output, refusing more than `limit` bytes (a damaged or hostile
/// stream must not make us allocate without bound).
fn read_bounded(decoder: impl std::io::Read, limit: usize) -> Result<Vec<u8>, CodecError> {
    use std::io::Read;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| CodecError::Corrupt)?;
    if out.len() > limit {
        return Err(CodecError::Corrupt);
    }
    Ok(out)
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Corrupt => f.write_str("the stored chunk does not decode"),
            CodecError::Params(p) => f.write_str(p),
        }
    }
}

/// A zero-filled buffer of `n` bytes, or an error (never an abort) when it cannot be had.
/// The memory comes zeroed from the allocator (`calloc`: for large sizes, untouched pages
/// of the OS), so a damaged header that claims gigabytes costs address space, not RAM,
/// until the decoder fails on the data that is actually there.
pub(crate) fn zeroed(n: usize) -> Result<Vec<u8>, CodecError> {
    if n > MAX_CHUNK_BYTES {
        return Err(CodecError::Corrupt);
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(n).map_err(|_| CodecError::Corrupt)?;
    // SAFETY: `layout` has a non-zero size. On success the allocation holds `n` zeroed
    // (initialised) bytes, allocated by the global allocator with the layout `Vec<u8>`
    // uses for capacity `n`, so the Vec may own and free it.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        if p.is_null() {
            return Err(CodecError::Corrupt);
        }
        Ok(Vec::from_raw_parts(p, n, n))
    }
}

/// One of the third-party filters implemented here, with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Codec {
    Blosc(Blosc),
    Lz4(Lz4),
    Bitshuffle(Bitshuffle),
    Zstd(Zstd),
    Bzip2(Bzip2),
}

impl Codec {
    /// The codec of filter `id` with `cd_values`; `Ok(None)` when `id` is not one of ours.
    pub fn of(id: i32, cd: &[u32]) -> Result<Option<Codec>, CodecError> {
        Ok(Some(match id {
            BLOSC_ID => Codec::Blosc(Blosc::from_cd(cd)?),
            LZ4_ID => Codec::Lz4(Lz4::from_cd(cd)),
            BITSHUFFLE_ID => Codec::Bitshuffle(Bitshuffle::from_cd(cd)?),
            ZSTD_ID => Codec::Zstd(Zstd::from_cd(cd)),
            BZIP2_ID => Codec::Bzip2(Bzip2::from_cd(cd)),
            _ => return Ok(None),
        }))
    }

    /// The decoded size recorded in `input`, for the formats that record it.
    pub fn decoded_len(&self, input: &[u8]) -> Option<usize> {
        match self {
            Codec::Blosc(_) => Blosc::decoded_len(input),
            Codec::Lz4(_) => Lz4::decoded_len(input),
            Codec::Bitshuffle(b) => b.decoded_len(input),
            Codec::Zstd(_) => Zstd::decoded_len(input),
            Codec::Bzip2(_) => None,
        }
    }

    /// Decodes `input` into `out`, which must be exactly the decoded size.
    pub fn decode_into(&self, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
        match self {
            Codec::Blosc(_) => Blosc::decode_into(input, out),
            Codec::Lz4(_) => Lz4::decode_into(input, out),
            Codec::Bitshuffle(b) => b.decode_into(input, out),
            Codec::Zstd(_) => Zstd::decode_into(input, out),
            Codec::Bzip2(_) => Bzip2::decode_into(input, out),
        }
    }

    /// Decodes `input` of unknown decoded size (`hint`, when known, must match).
    pub fn decode_vec(&self, input: &[u8], hint: Option<usize>) -> Result<Vec<u8>, CodecError> {
        let n = match (self.decoded_len(input), hint) {
            (Some(n), Some(h)) if n != h => return Err(CodecError::Corrupt),
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return match self {
                    Codec::Zstd(_) => Zstd::decode_vec(input, MAX_CHUNK_BYTES),
                    Codec::Bzip2(_) => Bzip2::decode_vec(input, MAX_CHUNK_BYTES),
                    _ => Err(CodecError::Corrupt),
                }
            }
        };
        let mut out = zeroed(n)?;
        self.decode_into(input, &mut out)?;
        Ok(out)
    }

    pub fn encode(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::Blosc(b) => b.encode(input),
            Codec::Lz4(l) => l.encode(input),
            Codec::Bitshuffle(b) => b.encode(input),
            Codec::Zstd(z) => z.encode(input),
            Codec::Bzip2(b) => b.encode(input),
        }
    }

    /// A short description for `inspect`.
    pub fn describe(&self) -> String {
        match self {
            Codec::Blosc(b) => {
                let shuffle = ["noshuffle", "shuffle", "bitshuffle"][b.shuffle as usize];
                format!(
                    "blosc {} {} {shuffle}",
                    b.compressor.to_string_lossy(),
                    b.clevel
                )
            }
            Codec::Lz4(_) => "lz4".into(),
            Codec::Bitshuffle(b) => match b.inner {
                bitshuffle::Inner::None => "bitshuffle".into(),
                bitshuffle::Inner::Lz4 => "bitshuffle lz4".into(),
                bitshuffle::Inner::Zstd(l) => format!("bitshuffle zstd {l}"),
            },
            Codec::Zstd(z) => format!("zstd {}", z.level),
            Codec::Bzip2(b) => format!("bzip2 {}", b.level),
        }
    }
}

/// Whether a filter of an input dataset can be put on an output dataset as it is: the
/// built-in ones HDF5 applies to any type, and the third-party ones implemented here.
pub(crate) fn portable(f: &Filter) -> bool {
    match f {
        Filter::Deflate(_) | Filter::Shuffle | Filter::Fletcher32 | Filter::LZF => true,
        Filter::User(id, cd) => matches!(Codec::of(*id, cd), Ok(Some(_))),
        _ => false,
    }
}

/// Names of registered HDF5 filters (the HDF Group's list of registered filter plugins, as
/// hdf5plugin also uses them), for errors about filters that cannot be decoded here.
const REGISTERED: &[(i32, &str)] = &[
    (1, "deflate"),
    (2, "shuffle"),
    (3, "fletcher32"),
    (4, "szip"),
    (5, "nbit"),
    (6, "scaleoffset"),
    (305, "LZO"),
    (307, "bzip2"),
    (32000, "LZF"),
    (32001, "blosc"),
    (32002, "MAFISC"),
    (32003, "Snappy"),
    (32004, "LZ4"),
    (32005, "APAX"),
    (32006, "CBF"),
    (32007, "JPEG-XR"),
    (32008, "bitshuffle"),
    (32009, "SPDP"),
    (32010, "LPC-Rice"),
    (32011, "CCSDS-123"),
    (32012, "JPEG-LS"),
    (32013, "zfp"),
    (32014, "fpzip"),
    (32015, "Zstandard"),
    (32016, "B3D"),
    (32017, "SZ"),
    (32018, "FCIDECOMP"),
    (32019, "JPEG"),
    (32020, "VBZ"),
    (32021, "FAPEC"),
    (32022, "BitGroom"),
    (32023, "Granular BitRound"),
    (32024, "SZ3"),
    (32025, "Delta-Rice"),
    (32026, "Blosc2"),
    (32027, "FLAC"),
    (32028, "SPERR"),
];

/// The registered name of filter `id`, when it is known.
pub(crate) fn filter_name(id: i32) -> Option<&'static str> {
    REGISTERED.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
}

/// "HDF5 filter 32017 (SZ)".
pub(crate) fn filter_label(id: i32) -> String {
    match filter_name(id) {
        Some(n) => format!("HDF5 filter {id} ({n})"),
        None => format!("HDF5 filter {id}"),
    }
}

/// The first filter of `filters` that this build cannot decode (neither built into
/// libhdf5 nor implemented here), as its id.
pub(crate) fn first_unsupported(filters: &[Filter]) -> Option<i32> {
    plugin::register();
    filters.iter().find_map(|f| {
        let id = f.id();
        // SAFETY: H5Zfilter_avail only reads HDF5's filter table; it is called under
        // HDF5's lock.
        let avail = hdf5::sync::sync(|| unsafe { hdf5_sys::h5z::H5Zfilter_avail(id) });
        (avail <= 0).then_some(id)
    })
}

/// What stops `ds` from being decoded here, in words, if anything: "HDF5 filter 32017 (SZ)
/// is not supported", or the problem with a known filter's parameters.
pub(crate) fn unsupported(ds: &hdf5::Dataset) -> Option<String> {
    let filters = ds.filters();
    if let Some(id) = first_unsupported(&filters) {
        return Some(format!("{} is not supported", filter_label(id)));
    }
    filters.iter().find_map(|f| match f {
        Filter::User(id, cd) => match Codec::of(*id, cd) {
            Err(e) => Some(format!("{}: {e}", filter_label(*id))),
            Ok(_) => None,
        },
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert_eq!(filter_label(32017), "HDF5 filter 32017 (SZ)");
        assert_eq!(filter_label(40000), "HDF5 filter 40000");
        assert!(REGISTERED.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn codecs_are_chosen_by_id() {
        assert!(matches!(Codec::of(32015, &[3]), Ok(Some(Codec::Zstd(_)))));
        assert!(matches!(Codec::of(32017, &[]), Ok(None)));
        assert!(Codec::of(32008, &[0, 4]).is_err());
        assert!(portable(&Filter::User(32001, vec![2, 2, 4, 4000, 5, 1, 5])));
        assert!(!portable(&Filter::User(32017, vec![])));
    }

    /// Damaged input (bytes flipped, truncated, garbage) is an error or some bytes, never a
    /// panic, an abort or a write out of bounds: every codec, many mutations.
    #[test]
    fn mutated_chunks_never_crash_a_codec() {
        let src: Vec<u8> = (0..6000u32)
            .flat_map(|i| ((i % 37) as f32 * 1.5).to_le_bytes())
            .collect();
        let codecs = [
            Codec::of(BLOSC_ID, &[2, 2, 4, 0, 5, 1, 5]),
            Codec::of(BLOSC_ID, &[2, 2, 4, 0, 5, 2, 1]),
            Codec::of(BLOSC_ID, &[2, 2, 4, 0, 5, 0, 0]),
            Codec::of(LZ4_ID, &[1000]),
            Codec::of(BITSHUFFLE_ID, &[0, 4, 4, 0, 2]),
            Codec::of(BITSHUFFLE_ID, &[0, 4, 4, 0, 3, 3]),
            Codec::of(BITSHUFFLE_ID, &[0, 4, 4, 0, 0]),
            Codec::of(ZSTD_ID, &[3]),
            Codec::of(BZIP2_ID, &[9]),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for codec in codecs {
            let codec = codec.unwrap().unwrap();
            let enc = codec.encode(&src).unwrap();
            assert_eq!(codec.decode_vec(&enc, Some(src.len())).unwrap(), src);
            for _ in 0..300 {
                let mut bad = enc.clone();
                match next() % 3 {
                    0 => {
                        for _ in 0..1 + next() % 4 {
                            let k = (next() % bad.len() as u64) as usize;
                            bad[k] ^= 1 << (next() % 8);
                        }
                    }
                    1 => bad.truncate((next() % bad.len() as u64) as usize),
                    _ => bad.iter_mut().for_each(|b| *b = next() as u8),
                }
                let mut out = vec![0u8; src.len()];
                let _ = codec.decode_into(&bad, &mut out);
                let _ = codec.decode_vec(&bad, None);
            }
        }
    }

    #[test]
    fn built_in_and_registered_filters_are_available() {
        let ours = [BLOSC_ID, LZ4_ID, BITSHUFFLE_ID, ZSTD_ID, BZIP2_ID];
        let filters: Vec<Filter> = ours.iter().map(|&id| Filter::User(id, vec![])).collect();
        assert_eq!(first_unsupported(&filters), None);
        assert_eq!(
            first_unsupported(&[Filter::Deflate(4), Filter::User(32017, vec![])]),
            Some(32017)
        );
    }
}
