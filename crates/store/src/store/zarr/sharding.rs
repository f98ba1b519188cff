//! The `sharding_indexed` configuration of a 1-D array, as both the reader (which checks
//! every shard's index) and the streaming shard writer need it: read here once.

use serde_json::Value;

/// How a 1-D array's shards are cut into inner chunks and where their index sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShardLayout {
    /// Elements per inner chunk.
    pub inner_len: u64,
    /// Inner chunks per shard.
    pub per_shard: u64,
    /// Bytes of a shard's encoded index: 16 per inner chunk, 4 more with `crc32c`.
    pub index_len: u64,
    /// The index is at the start of the shard (`index_location: "start"`), else at its end.
    pub index_at_start: bool,
}

impl ShardLayout {
    /// The layout of shards of `shard_len` elements under the sharding `configuration`.
    ///
    /// # Errors
    /// Why the configuration is not one atlasnorm reads: inner chunks that do not divide the
    /// shard, or index codecs other than `bytes` and `crc32c`.
    pub fn parse(configuration: &Value, shard_len: u64) -> Result<Self, String> {
        let inner_len = match configuration
            .get("chunk_shape")
            .and_then(Value::as_array)
            .map(|v| v.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        {
            Some(Some(v)) if v.len() == 1 && v[0] > 0 && shard_len.is_multiple_of(v[0]) => v[0],
            _ => return Err("inner chunks must divide the shard".into()),
        };
        let per_shard = shard_len / inner_len;
        let mut index_len = per_shard
            .checked_mul(16)
            .ok_or_else(|| "too many inner chunks".to_string())?;
        for c in configuration
            .get("index_codecs")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            match c.get("name").and_then(Value::as_str) {
                Some("bytes") => {}
                Some("crc32c") => index_len += 4,
                Some(other) => return Err(format!("index codec '{other}'")),
                None => return Err("index codec without a name".into()),
            }
        }
        let index_at_start =
            configuration.get("index_location").and_then(Value::as_str) == Some("start");
        Ok(ShardLayout {
            inner_len,
            per_shard,
            index_len,
            index_at_start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layouts_as_anndata_and_zarr_python_write_them() {
        let conf = json!({"chunk_shape": [1000], "codecs": [{"name": "bytes"}],
            "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}]});
        assert_eq!(
            ShardLayout::parse(&conf, 4000),
            Ok(ShardLayout {
                inner_len: 1000,
                per_shard: 4,
                index_len: 68,
                index_at_start: false
            })
        );
        let start = json!({"chunk_shape": [10], "index_codecs": [{"name": "bytes"}],
            "index_location": "start"});
        let l = ShardLayout::parse(&start, 30).unwrap();
        assert!(l.index_at_start);
        assert_eq!(l.index_len, 48);
    }

    #[test]
    fn unreadable_layouts_say_why() {
        let ragged = json!({"chunk_shape": [7], "index_codecs": []});
        assert!(ShardLayout::parse(&ragged, 30)
            .unwrap_err()
            .contains("divide"));
        let zero = json!({"chunk_shape": [0]});
        assert!(ShardLayout::parse(&zero, 30).is_err());
        let two_d = json!({"chunk_shape": [5, 5]});
        assert!(ShardLayout::parse(&two_d, 25).is_err());
        let gzip_index = json!({"chunk_shape": [5], "index_codecs": [{"name": "gzip"}]});
        assert_eq!(
            ShardLayout::parse(&gzip_index, 25).unwrap_err(),
            "index codec 'gzip'"
        );
    }
}
