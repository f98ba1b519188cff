//! Building an AnnData tree in a zarr output ([`TreeWriter`]), e.g. for `.h5ad` → `.zarr`:
//! groups and arrays with anndata's zarr layout (v3: sharded, `string` dtype with
//! `vlen-utf8`; v2: `|O` with the `vlen-utf8` filter), rows written in order and stored in
//! whole chunks (or shards), encoded in parallel.
//!
//! From an `.h5ad`, a dataframe's `string-array` columns (and index) become
//! `nullable-string-array` groups (`values` + an all-false `mask`, `na-value` NaN): anndata
//! 0.13 with pandas 3 reads an `.h5ad` string column as pandas' `str` dtype and writes that
//! so in zarr, and reads a zarr `string-array` back as `object` — a copy kept as
//! `string-array` would not be what `read_h5ad(...).write_zarr(...)` leaves.

use super::layout::LayoutHint;
use super::output::ZarrOutput;
use crate::error::Result;
use crate::store::tree::{ArrayData, ArrayInfo, Attrs, ElemType, TreeWriter};

impl ZarrOutput {
    fn tree_hint(&self) -> LayoutHint {
        LayoutHint {
            codec: self.zarr.codec,
            chunk: None,
            // Unsharded when the user asked for it; anndata's shards otherwise.
            shard: self.zarr.shard.filter(|&s| s == 0),
            inherited_chunk: false,
        }
    }

    /// Whether `array` (with `info`) is a string column or index of a dataframe written from
    /// an `.h5ad`, to be written as `nullable-string-array`.
    fn is_h5ad_string_column(&self, array: &str, info: &ArrayInfo) -> bool {
        let parent = array.rsplit_once('/').map_or("", |(p, _)| p);
        self.tree_from_h5ad()
            && info.elem == ElemType::String
            && info.shape.len() == 1
            && info.attrs.get("encoding-type").and_then(|v| v.as_str()) == Some("string-array")
            && self.frames.contains(parent)
    }

    fn create_plain_array(&mut self, array: &str, info: &ArrayInfo) -> Result<()> {
        // The normalized matrix's carried-over `indices`/`indptr` follow its layout.
        let of_matrix = array
            .strip_prefix(self.normalized.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        let hint = if of_matrix {
            self.hint_for(Some(array))
        } else {
            self.tree_hint()
        };
        let mut w = self
            .new_array(
                array,
                info.elem,
                &info.shape,
                &hint,
                self.writer_budget(),
                info.attrs.clone(),
            )
            .map_err(|e| self.wrap(e))?;
        if w.len() == 0 {
            w.finish().map_err(|e| self.wrap(e))?;
        } else {
            self.writers.insert(array.to_string(), w);
        }
        Ok(())
    }

    fn write_plain_rows(&mut self, array: &str, first_row: u64, data: &ArrayData) -> Result<()> {
        let Some(mut w) = self.writers.remove(array) else {
            return Err(self.fail(format!(
                "{array}: rows written to an array that is not being written"
            )));
        };
        let row_len = w.row_len().max(1);
        if w.count() != first_row * row_len {
            return Err(self.fail(format!(
                "{array}: rows from {first_row} written, but {} rows were written so far",
                w.count() / row_len
            )));
        }
        let result = match data {
            ArrayData::Num(v) => w.append_numvec(v),
            ArrayData::Bool(b) => {
                let bytes: Vec<u8> = b.iter().map(|&x| x as u8).collect();
                w.append_bytes(&bytes)
            }
            ArrayData::String(s) => w.append_strings(s),
        };
        result.map_err(|e| self.wrap(e))?;
        if w.count() == w.len() {
            w.finish().map_err(|e| self.wrap(e))?;
        } else {
            self.writers.insert(array.to_string(), w);
        }
        Ok(())
    }
}

impl TreeWriter for ZarrOutput {
    fn create_group(&mut self, group: &str, attrs: &Attrs) -> Result<()> {
        if self.tree_from_h5ad()
            && attrs.get("encoding-type").and_then(|v| v.as_str()) == Some("dataframe")
        {
            self.frames.insert(group.to_string());
        }
        self.put_group(group, attrs).map_err(|e| self.wrap(e))
    }

    fn create_array(&mut self, array: &str, info: &ArrayInfo) -> Result<()> {
        if !self.is_h5ad_string_column(array, info) {
            return self.create_plain_array(array, info);
        }
        let mut group = super::output::encoding("nullable-string-array", "0.1.0");
        group.insert("na-value".into(), "NaN".into());
        self.put_group(array, &group).map_err(|e| self.wrap(e))?;
        let values = ArrayInfo {
            attrs: super::output::encoding("string-array", "0.2.0"),
            ..info.clone()
        };
        self.create_plain_array(&format!("{array}/values"), &values)?;
        let mask = ArrayInfo {
            elem: ElemType::Bool,
            shape: info.shape.clone(),
            attrs: super::output::encoding("array", "0.2.0"),
        };
        self.create_plain_array(&format!("{array}/mask"), &mask)?;
        self.nullable_columns.insert(array.to_string());
        Ok(())
    }

    fn write_rows(&mut self, array: &str, first_row: u64, data: &ArrayData) -> Result<()> {
        if !self.nullable_columns.contains(array) {
            return self.write_plain_rows(array, first_row, data);
        }
        let ArrayData::String(strings) = data else {
            return Err(self.fail(format!("{array}: non-string rows for a string column")));
        };
        self.write_plain_rows(&format!("{array}/values"), first_row, data)?;
        let mask = ArrayData::Bool(vec![false; strings.len()]);
        self.write_plain_rows(&format!("{array}/mask"), first_row, &mask)
    }

    fn create_null(&mut self, path: &str, attrs: &Attrs) -> Result<()> {
        self.put_null(path, attrs).map_err(|e| self.wrap(e))
    }
}
