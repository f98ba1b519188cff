//! Overlapping reads, computation and writes.
//!
//! HDF5 serialises every call behind one lock, so the useful overlap is I/O on two threads
//! against computation on the rayon pool. Bounded channels of depth one keep at most
//! [`super::plan::BLOCKS_IN_FLIGHT`] blocks alive at once, whatever the matrix size.

use crossbeam_channel::bounded;

use crate::error::{Error, Result};

/// Runs `read` for each block on a reader thread, `compute` on the calling thread (inside
/// the rayon pool) and `write` on a writer thread, in block order. The first error stops
/// all three stages and is returned.
pub fn stream<B, R, W>(
    blocks: impl IntoIterator<Item = B> + Send,
    read: impl Fn(&B) -> Result<R> + Send,
    mut compute: impl FnMut(B, R) -> Result<W>,
    mut write: impl FnMut(W) -> Result<()> + Send,
) -> Result<()>
where
    B: Send,
    R: Send,
    W: Send,
{
    std::thread::scope(|scope| {
        let (read_tx, read_rx) = bounded::<Result<(B, R)>>(1);
        let (write_tx, write_rx) = bounded::<W>(1);
        let reader = scope.spawn(move || {
            for block in blocks {
                let item = read(&block).map(|r| (block, r));
                let failed = item.is_err();
                if read_tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || -> Result<()> {
            for item in write_rx {
                write(item)?;
            }
            Ok(())
        });

        let mut outcome = Ok(());
        for item in read_rx.iter() {
            match item.and_then(|(block, raw)| compute(block, raw)) {
                Ok(done) => {
                    if write_tx.send(done).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        drop(write_tx);
        drop(read_rx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the writer thread panicked".into())));
        if reader.join().is_err() {
            return Err(Error::Internal("the reader thread panicked".into()));
        }
        outcome.and(written)
    })
}

/// Like [`stream`] without a write stage: computation consumes the blocks.
pub fn consume<B, R>(
    blocks: impl IntoIterator<Item = B> + Send,
    read: impl Fn(&B) -> Result<R> + Send,
    compute: impl FnMut(B, R) -> Result<()>,
) -> Result<()>
where
    B: Send,
    R: Send,
{
    stream(blocks, read, compute, |()| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_arrive_in_order_through_all_stages() {
        let mut seen = Vec::new();
        stream(
            0..100u32,
            |&b| Ok(b * 2),
            |b, r| Ok((b, r + 1)),
            |(b, v)| {
                seen.push((b, v));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..100).map(|b| (b, b * 2 + 1)).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_of_any_stage_is_returned() {
        let read_fails = stream(
            0..10u32,
            |&b| {
                if b == 3 {
                    Err(Error::Options("read 3".into()))
                } else {
                    Ok(b)
                }
            },
            |_, r| Ok(r),
            |_| Ok(()),
        );
        assert_eq!(read_fails.unwrap_err().to_string(), "read 3");
        let compute_fails = consume(
            0..10u32,
            |&b| Ok(b),
            |_, r| {
                if r == 5 {
                    Err(Error::Options("compute 5".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(compute_fails.unwrap_err().to_string(), "compute 5");
        let write_fails = stream(
            0..10u32,
            |&b| Ok(b),
            |_, r| Ok(r),
            |w| {
                if w == 7 {
                    Err(Error::Options("write 7".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(write_fails.unwrap_err().to_string(), "write 7");
    }
}
