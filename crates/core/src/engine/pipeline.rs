//! Overlapping reads, computation and writes.
//!
//! HDF5 serialises every call behind one lock, so the useful overlap is I/O on two threads
//! against computation on the rayon pool. Bounded channels of depth one keep at most
//! [`super::plan::BLOCKS_IN_FLIGHT`] blocks alive at once, whatever the matrix size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{bounded, unbounded};

use crate::error::{Error, Result};

/// A rayon pool for the reader's and writer's parallel work (chunk decoding and encoding),
/// sized like the pool the caller runs in (`--threads`), so the codec is limited by it too.
/// Reader and writer share it; pools are kept per size for the life of the process.
fn io_pool() -> Arc<rayon::ThreadPool> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let n = rayon::current_num_threads();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pools
        .entry(n)
        .or_insert_with(|| {
            Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("atlasnorm-io-{i}"))
                    .build()
                    .expect("cannot start the I/O worker threads"),
            )
        })
        .clone()
}

/// Runs `read` for each block on a reader thread, `compute` on the calling thread (inside
/// the rayon pool) and `write` on a writer thread, in block order, with block buffers recycled: at most `pool` buffers of type `Buf` exist
/// (made with `new` when none is free) and each goes round reader → compute → writer →
/// reader, so block memory is allocated (and faulted in) once and stays bounded. `read`
/// fills a buffer for a block, `compute` transforms it in place, `write` stores it.
/// Reads and writes run on a rayon pool of the caller's size.
pub fn stream_pooled<B, Buf>(
    blocks: impl IntoIterator<Item = B> + Send,
    pool: usize,
    new: impl Fn() -> Buf + Send,
    read: impl Fn(&B, &mut Buf) -> Result<()> + Send + Sync,
    mut compute: impl FnMut(&B, &mut Buf) -> Result<()>,
    mut write: impl FnMut(&B, &Buf) -> Result<()> + Send,
) -> Result<()>
where
    B: Send + Sync,
    Buf: Send + Sync,
{
    let io = io_pool();
    let pool = pool.max(1);
    std::thread::scope(|scope| {
        let (read_tx, read_rx) = bounded::<Result<(B, Buf)>>(pool);
        let (write_tx, write_rx) = bounded::<(B, Buf)>(pool);
        let (free_tx, free_rx) = unbounded::<Buf>();
        let io_r = io.clone();
        let reader = scope.spawn(move || {
            let mut made = 0;
            for block in blocks {
                let mut buf = match free_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if made < pool => {
                        made += 1;
                        new()
                    }
                    Err(_) => match free_rx.recv() {
                        Ok(b) => b,
                        Err(_) => break, // the writer stopped
                    },
                };
                let item = io_r
                    .install(|| read(&block, &mut buf))
                    .map(|()| (block, buf));
                let failed = item.is_err();
                if read_tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || -> Result<()> {
            for (block, buf) in write_rx {
                io.install(|| write(&block, &buf))?;
                // The reader may have finished: then the buffer is simply dropped.
                let _ = free_tx.send(buf);
            }
            Ok(())
        });

        let mut outcome = Ok(());
        for item in &read_rx {
            match item.and_then(|(block, mut buf)| compute(&block, &mut buf).map(|()| (block, buf)))
            {
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

/// Like [`stream_pooled`] without a write stage.
pub fn consume_pooled<B, Buf>(
    blocks: impl IntoIterator<Item = B> + Send,
    pool: usize,
    new: impl Fn() -> Buf + Send,
    read: impl Fn(&B, &mut Buf) -> Result<()> + Send + Sync,
    compute: impl FnMut(&B, &mut Buf) -> Result<()>,
) -> Result<()>
where
    B: Send + Sync,
    Buf: Send + Sync,
{
    stream_pooled(blocks, pool, new, read, compute, |_, _| Ok(()))
}

/// Like [`consume_pooled`] for a `read` that returns a fresh value per block instead of
/// filling a recycled buffer: two blocks are alive at once (one read while one is computed).
pub fn consume<B, R>(
    blocks: impl IntoIterator<Item = B> + Send,
    read: impl Fn(&B) -> Result<R> + Send + Sync,
    mut compute: impl FnMut(&B, R) -> Result<()>,
) -> Result<()>
where
    B: Send + Sync,
    R: Send + Sync,
{
    consume_pooled(
        blocks,
        2,
        || None,
        |b, slot: &mut Option<R>| {
            *slot = Some(read(b)?);
            Ok(())
        },
        |b, slot| compute(b, slot.take().expect("the reader filled the slot")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_arrive_in_order_through_consume() {
        let mut seen = Vec::new();
        consume(
            0..100u32,
            |&b| Ok(b * 2),
            |&b, r| {
                seen.push((b, r + 1));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..100).map(|b| (b, b * 2 + 1)).collect::<Vec<_>>());
    }

    #[test]
    fn pooled_buffers_are_reused_and_bounded() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let made = AtomicUsize::new(0);
        let mut seen = Vec::new();
        stream_pooled(
            0..100u32,
            3,
            || {
                made.fetch_add(1, Ordering::SeqCst);
                Vec::<u32>::new()
            },
            |&b, buf| {
                buf.clear();
                buf.push(b * 2);
                Ok(())
            },
            |_, buf| {
                buf[0] += 1;
                Ok(())
            },
            |&b, buf| {
                seen.push((b, buf[0]));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..100).map(|b| (b, b * 2 + 1)).collect::<Vec<_>>());
        assert!(made.load(Ordering::SeqCst) <= 3);
        let err = consume_pooled(
            0..10u32,
            2,
            Vec::<u32>::new,
            |&b, _| {
                if b == 4 {
                    Err(Error::Options("read 4".into()))
                } else {
                    Ok(())
                }
            },
            |_, _| Ok(()),
        );
        assert_eq!(err.unwrap_err().to_string(), "read 4");
    }

    #[test]
    fn the_first_error_of_any_stage_is_returned() {
        let fail_at = |stage: &'static str, at: u32| {
            let check = move |here: &str, b: u32| {
                if here == stage && b == at {
                    Err(Error::Options(format!("{stage} {at}")))
                } else {
                    Ok(())
                }
            };
            stream_pooled(
                0..10u32,
                2,
                || 0u32,
                move |&b, buf| {
                    *buf = b;
                    check("read", b)
                },
                move |_, buf| check("compute", *buf),
                move |_, buf| check("write", *buf),
            )
        };
        for (stage, at) in [("read", 3), ("compute", 5), ("write", 7)] {
            assert_eq!(
                fail_at(stage, at).unwrap_err().to_string(),
                format!("{stage} {at}")
            );
        }
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
    }
}
