//! Bytes of queued frames in a preallocated, bounded pool of 2 KiB chunks.
//!
//! A frame takes as many chunks as it needs (a 1500-byte frame one, a
//! 64 KiB GSO frame 33), linked through an index array; freed chunks go
//! back to a free list. Frames leave in deadline order, not arrival order
//! (jitter, reordering), so a ring buffer would not do. Nothing is
//! allocated after [`FramePool::new`].

/// Bytes per chunk: one MTU-sized frame with its virtio-net header.
pub(crate) const CHUNK: usize = 2048;
/// No chunk.
const NIL: u32 = u32::MAX;

/// Where a stored frame lies: its first chunk and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    first: u32,
    len: u32,
}

impl Stored {
    /// The frame's length in bytes.
    pub(crate) fn len(self) -> usize {
        self.len as usize
    }
}

/// A fixed set of chunks.
#[derive(Debug)]
pub(crate) struct FramePool {
    data: Vec<u8>,
    next: Vec<u32>,
    free: u32,
    free_chunks: usize,
}

impl FramePool {
    /// A pool of `chunks` chunks (`chunks × 2 KiB` bytes).
    pub(crate) fn new(chunks: usize) -> FramePool {
        let chunks = chunks.min(NIL as usize);
        FramePool {
            // Zeroed memory comes from the OS lazily: pages not yet used cost nothing.
            data: vec![0; chunks * CHUNK],
            next: (0..chunks).map(|i| if i + 1 < chunks { i as u32 + 1 } else { NIL }).collect(),
            free: if chunks > 0 { 0 } else { NIL },
            free_chunks: chunks,
        }
    }

    /// Chunks not in use.
    #[cfg(test)]
    pub(crate) fn free_chunks(&self) -> usize {
        self.free_chunks
    }

    /// Copies the concatenation of `parts` in; `None` when it does not fit.
    pub(crate) fn store(&mut self, parts: &[&[u8]]) -> Option<Stored> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let need = len.div_ceil(CHUNK).max(1);
        if need > self.free_chunks || len > u32::MAX as usize {
            return None;
        }
        let first = self.free;
        let mut chunk = first;
        let mut at = 0; // offset inside the current chunk
        for part in parts {
            let mut part = *part;
            while !part.is_empty() {
                if at == CHUNK {
                    chunk = self.next[chunk as usize];
                    at = 0;
                }
                let n = part.len().min(CHUNK - at);
                let start = chunk as usize * CHUNK + at;
                self.data[start..start + n].copy_from_slice(&part[..n]);
                part = &part[n..];
                at += n;
            }
        }
        // Unlink the `need` chunks taken from the free list.
        let mut last = first;
        for _ in 1..need {
            last = self.next[last as usize];
        }
        self.free = self.next[last as usize];
        self.next[last as usize] = NIL;
        self.free_chunks -= need;
        Some(Stored { first, len: len as u32 })
    }

    /// Copies a stored frame into the front of `out` (at least `len` bytes)
    /// and frees its chunks.
    pub(crate) fn take(&mut self, stored: Stored, out: &mut [u8]) {
        let mut chunk = stored.first;
        let mut done = 0;
        let len = stored.len();
        loop {
            let n = (len - done).min(CHUNK);
            let start = chunk as usize * CHUNK;
            if let Some(dst) = out.get_mut(done..done + n) {
                dst.copy_from_slice(&self.data[start..start + n]);
            }
            done += n;
            let next = self.next[chunk as usize];
            self.next[chunk as usize] = self.free;
            self.free = chunk;
            self.free_chunks += 1;
            if next == NIL || done >= len {
                break;
            }
            chunk = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_chunks_and_free_their_chunks() {
        let mut pool = FramePool::new(40);
        let big: Vec<u8> = (0..65_000u32).map(|i| (i % 251) as u8).collect();
        let small = [7u8; 60];
        let a = pool.store(&[&[1, 2, 3], &small]).unwrap();
        let b = pool.store(&[&[9; 12], &big]).unwrap();
        assert_eq!(pool.free_chunks(), 40 - 1 - 32);
        assert!(pool.store(&[&big]).is_none(), "33 chunks needed, 7 free");
        let mut out = vec![0u8; 70_000];
        pool.take(b, &mut out);
        assert_eq!(&out[..12], &[9; 12]);
        assert_eq!(&out[12..12 + big.len()], &big[..]);
        assert_eq!(pool.free_chunks(), 39);
        let c = pool.store(&[&big]).unwrap();
        pool.take(a, &mut out);
        assert_eq!(&out[..63], [&[1, 2, 3][..], &small].concat());
        pool.take(c, &mut out);
        assert_eq!(&out[..big.len()], &big[..]);
        assert_eq!(pool.free_chunks(), 40);
        let empty = pool.store(&[]).unwrap();
        assert_eq!(empty.len(), 0);
        pool.take(empty, &mut out);
        assert_eq!(pool.free_chunks(), 40);
    }
}
