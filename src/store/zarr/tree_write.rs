//! Building an AnnData tree in a zarr output ([`TreeWriter`]), e.g. for `.h5ad` → `.zarr`:
//! groups and arrays with anndata's zarr layout (v3: sharded, `string` dtype with
//! `vlen-utf8`; v2: `|O` with the `vlen-utf8` filter), rows written in order and stored in
//! whole chunks (or shards), encoded in parallel.

use super::layout::LayoutHint;
use super::output::ZarrOutput;
use crate::error::Result;
use crate::store::tree::{ArrayData, ArrayInfo, Attrs, TreeWriter};

impl ZarrOutput {
    fn tree_hint(&self) -> LayoutHint {
        LayoutHint {
            codec: self.zarr.codec,
            chunk: None,
            // Unsharded when the user asked for it; anndata's shards otherwise.
            shard: self.zarr.shard.filter(|&s| s == 0),
        }
    }
}

impl TreeWriter for ZarrOutput {
    fn create_group(&mut self, group: &str, attrs: &Attrs) -> Result<()> {
        self.put_group(group, attrs).map_err(|e| self.wrap(e))
    }

    fn create_array(&mut self, array: &str, info: &ArrayInfo) -> Result<()> {
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

    fn write_rows(&mut self, array: &str, first_row: u64, data: &ArrayData) -> Result<()> {
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

    fn create_null(&mut self, path: &str, attrs: &Attrs) -> Result<()> {
        self.put_null(path, attrs).map_err(|e| self.wrap(e))
    }
}
