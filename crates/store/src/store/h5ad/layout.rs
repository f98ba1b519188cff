//! Storage layout of new datasets: chunking and filters, taken from an input dataset or
//! chosen like h5py does.

use hdf5::filters::Filter;
use hdf5::plist::dataset_create::{AllocTime, FillTime};
use hdf5::{Dataset, Datatype, Extent, Group, SimpleExtents};

use hdf5_sys::h5d::H5Dget_type;
use hdf5_sys::h5t::{H5T_order_t, H5Tclose, H5Tget_order, H5Tset_order};

use crate::array::DType;

/// Chunk shape (`None`: contiguous) and filter pipeline of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Storage {
    pub chunk: Option<Vec<u64>>,
    pub filters: Vec<Filter>,
}

impl Storage {
    pub fn contiguous() -> Self {
        Storage {
            chunk: None,
            filters: Vec::new(),
        }
    }

    /// The layout of an existing dataset. Only filters that do not depend on the element
    /// type are carried over: deflate, shuffle, lzf, fletcher32, and the third-party ones
    /// implemented in [`super::filters`] (blosc, lz4, bitshuffle, zstd, bzip2) with their
    /// `cd_values` as stored (the type-dependent slots are refilled for the new type when
    /// the dataset is created).
    pub fn of(ds: &Dataset) -> Self {
        let chunk = ds
            .chunk()
            .map(|c| c.into_iter().map(|d| d as u64).collect::<Vec<_>>());
        Storage {
            chunk,
            filters: portable_filters(&ds.filters()),
        }
    }

    /// For a new 1-D array of `len` elements of `elem_size` bytes: the given layout when it
    /// is 1-D chunked, else h5py's guessed chunk (anndata's sparse arrays are always chunked).
    pub fn for_1d(from: Option<&Storage>, len: u64, elem_size: usize) -> Self {
        match from {
            Some(s) if s.chunk.as_ref().is_some_and(|c| c.len() == 1 && c[0] > 0) => s.clone(),
            Some(s) if s.chunk.is_none() && s.filters.is_empty() && len > 0 => {
                Storage::contiguous()
            }
            other => Storage {
                chunk: Some(guess_chunk(&[len], elem_size)),
                filters: other.map(|s| s.filters.clone()).unwrap_or_default(),
            },
        }
    }

    /// Elements of a whole chunk along the first axis times the rest of the row
    /// (the write unit that never splits a chunk); `None` when contiguous.
    pub fn chunk_rows(&self) -> Option<u64> {
        self.chunk.as_ref().and_then(|c| c.first().copied())
    }
}

/// The filters of `filters` that can be applied to any element type.
pub(crate) fn portable_filters(filters: &[Filter]) -> Vec<Filter> {
    filters
        .iter()
        .filter(|f| super::filters::portable(f))
        .cloned()
        .collect()
}

/// h5py's `guess_chunk` (h5py/_hl/filters.py): chunks of 8 KiB .. 1 MiB, growing with the
/// dataset size.
pub(crate) fn guess_chunk(shape: &[u64], elem_size: usize) -> Vec<u64> {
    const CHUNK_BASE: f64 = 16.0 * 1024.0;
    const CHUNK_MIN: f64 = 8.0 * 1024.0;
    const CHUNK_MAX: f64 = 1024.0 * 1024.0;
    let mut chunks: Vec<f64> = shape
        .iter()
        .map(|&d| if d == 0 { 1024.0 } else { d as f64 })
        .collect();
    let ndims = chunks.len().max(1);
    let dset_size = chunks.iter().product::<f64>() * elem_size as f64;
    let mut target = CHUNK_BASE * 2f64.powf((dset_size / (1024.0 * 1024.0)).log10());
    target = target.clamp(CHUNK_MIN, CHUNK_MAX);
    let mut idx = 0usize;
    loop {
        let chunk_bytes = chunks.iter().product::<f64>() * elem_size as f64;
        if (chunk_bytes < target || ((chunk_bytes - target) / target) < 0.5)
            && chunk_bytes < CHUNK_MAX
        {
            break;
        }
        if chunks.iter().product::<f64>() == 1.0 {
            break;
        }
        let i = idx % ndims;
        chunks[i] = (chunks[i] / 2.0).ceil();
        idx += 1;
    }
    chunks.into_iter().map(|c| c as u64).collect()
}

/// The HDF5 (native) type of a dtype.
pub(crate) fn datatype(dtype: DType) -> hdf5::Result<Datatype> {
    match dtype {
        DType::I8 => Datatype::from_type::<i8>(),
        DType::I16 => Datatype::from_type::<i16>(),
        DType::I32 => Datatype::from_type::<i32>(),
        DType::I64 => Datatype::from_type::<i64>(),
        DType::U8 => Datatype::from_type::<u8>(),
        DType::U16 => Datatype::from_type::<u16>(),
        DType::U32 => Datatype::from_type::<u32>(),
        DType::U64 => Datatype::from_type::<u64>(),
        DType::F32 => Datatype::from_type::<f32>(),
        DType::F64 => Datatype::from_type::<f64>(),
    }
}

/// This machine's byte order, as HDF5 names it.
fn native_order() -> H5T_order_t {
    if cfg!(target_endian = "big") {
        H5T_order_t::H5T_ORDER_BE
    } else {
        H5T_order_t::H5T_ORDER_LE
    }
}

/// Whether a dataset's numbers are stored in the other byte order than this machine's
/// (big-endian `>f4` on x86 and ARM): numpy, and so anndata, keeps that byte order in the
/// dtype it reads, and writes it back as it is.
pub(crate) fn foreign_order(ds: &Dataset) -> bool {
    // SAFETY: `ds` is an open dataset; the type id is closed before returning.
    hdf5::sync::sync(|| unsafe {
        let t = H5Dget_type(ds.id());
        if t < 0 {
            return false;
        }
        let order = H5Tget_order(t);
        H5Tclose(t);
        matches!(order, H5T_order_t::H5T_ORDER_BE | H5T_order_t::H5T_ORDER_LE)
            && order != native_order()
    })
}

/// The HDF5 type of a dtype in the byte order other than this machine's.
pub(crate) fn foreign_datatype(dtype: DType) -> hdf5::Result<Datatype> {
    let t = datatype(dtype)?;
    let order = match native_order() {
        H5T_order_t::H5T_ORDER_LE => H5T_order_t::H5T_ORDER_BE,
        _ => H5T_order_t::H5T_ORDER_LE,
    };
    // SAFETY: `t` is a fresh, modifiable copy of a predefined atomic type (the hdf5 crate
    // builds types with H5Tcopy).
    let status = hdf5::sync::sync(|| unsafe { H5Tset_order(t.id(), order) });
    if status < 0 {
        return Err(hdf5::Error::query().unwrap_or_else(|e| e));
    }
    Ok(t)
}

/// Creates a dataset of `shape` with `storage`. Chunked datasets get an unlimited first
/// axis (`maxshape=(None, ...)`, as h5py/anndata write sparse arrays) so they can grow.
pub(crate) fn create_dataset(
    group: &Group,
    name: &str,
    dtype: DType,
    shape: &[u64],
    storage: &Storage,
) -> hdf5::Result<Dataset> {
    create_dataset_of(group, name, &datatype(dtype)?, shape, storage)
}

/// [`create_dataset`] with an explicit HDF5 type (e.g. [`foreign_datatype`]).
pub(crate) fn create_dataset_of(
    group: &Group,
    name: &str,
    dtype: &Datatype,
    shape: &[u64],
    storage: &Storage,
) -> hdf5::Result<Dataset> {
    create_dataset_with(group, name, dtype, shape, storage, false)
}

/// [`create_dataset_of`] for a dataset that will be written whole, in order: when it is
/// chunked without filters, every chunk is allocated now (`H5D_ALLOC_TIME_EARLY`, no fill
/// value written), so that HDF5 places them back to back in the file and the writer can
/// store runs of chunks with one `pwrite` each ([`super::chunks::RawChunks::pwrite_plain`]).
/// The values read back are the same; only the file's allocation-time property differs.
pub(crate) fn create_dataset_preallocated(
    group: &Group,
    name: &str,
    dtype: &Datatype,
    shape: &[u64],
    storage: &Storage,
) -> hdf5::Result<Dataset> {
    let prealloc =
        storage.chunk.is_some() && storage.filters.is_empty() && shape.iter().all(|&d| d > 0);
    create_dataset_with(group, name, dtype, shape, storage, prealloc)
}

fn create_dataset_with(
    group: &Group,
    name: &str,
    dtype: &Datatype,
    shape: &[u64],
    storage: &Storage,
    prealloc: bool,
) -> hdf5::Result<Dataset> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let mut builder = group.new_dataset_builder().empty_as(dtype);
    if prealloc {
        builder = builder
            .alloc_time(Some(AllocTime::Early))
            .fill_time(FillTime::Never);
    }
    match &storage.chunk {
        None => builder
            .shape(SimpleExtents::fixed(dims))
            .no_chunk()
            .set_filters(&storage.filters)
            .create(name),
        Some(chunk) => {
            let extents = SimpleExtents::from_vec(
                dims.iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if i == 0 {
                            Extent::resizable(d)
                        } else {
                            Extent::fixed(d)
                        }
                    })
                    .collect(),
            );
            let chunk: Vec<usize> = chunk
                .iter()
                .zip(dims.iter().chain(std::iter::repeat(&1)))
                .enumerate()
                .map(|(i, (&c, &d))| {
                    let c = c.max(1) as usize;
                    // Fixed axes cannot have chunks larger than themselves.
                    if i == 0 {
                        c
                    } else {
                        c.min(d.max(1))
                    }
                })
                .collect();
            builder
                .shape(extents)
                .chunk(chunk)
                .set_filters(&storage.filters)
                .create(name)
        }
    }
}
