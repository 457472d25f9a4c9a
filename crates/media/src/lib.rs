//! # volna-media
//!
//! CPU-bound work kept off volna's event loop, and the gauge that shows whether it was.
//!
//! volna serves every socket from tokio tasks. A task that decodes a 12-megapixel photo for 300 ms
//! holds its runtime thread for those 300 ms, and every connection waiting on that thread waits
//! too. So image work goes to an [`ImagePool`]: a fixed number of plain OS threads fed by a
//! bounded queue. The async caller awaits a oneshot, which costs the event loop nothing. In Rust
//! threads run CPU-bound code truly in parallel (there is no GIL), so a thread pool does here
//! what Python needs a process pool for. See `docs/concurrency.md`.
//!
//! What this crate is not: it does no network I/O and knows nothing about rooms or transports. It
//! turns bytes into a [`Thumbnail`] or an [`ImageError`] with a stable code, and it measures lag.
//!
//! ## Layout
//! - `thumb.rs`: [`make_thumbnail`], the synchronous work: sniff the format from magic bytes,
//!   check [`ImageLimits`] (bytes, then pixels from the header before decoding, then memory),
//!   decode, shrink, encode as JPEG (or PNG when transparent).
//! - `pool.rs`: [`ImagePool`], the worker threads and the bounded queue; full means
//!   [`ImageError::Busy`] at once, never waiting and never an unbounded pile-up.
//! - `lag.rs`: [`LagMonitor`], a ticker task that records how late the runtime wakes it.
//! - `error.rs`: [`ImageError`] and its codes.
//!
//! ## Example
//! ```no_run
//! # async fn demo(upload: bytes::Bytes) {
//! use volna_media::{ImagePool, LagMonitor, PoolConfig};
//!
//! let pool = ImagePool::new(PoolConfig::default()).expect("worker threads");
//! let lag = LagMonitor::start(LagMonitor::DEFAULT_INTERVAL);
//! match pool.thumbnail(upload).await {
//!     Ok(t) => println!("{}x{} {} -> {} bytes of {}", t.width, t.height, t.format_in, t.thumb.len(), t.thumb_mime),
//!     Err(e) => println!("error {}: {e}", e.code()),
//! }
//! println!("event-loop lag: {}", lag.snapshot());
//! # }
//! ```

mod error;
mod lag;
mod pool;
mod thumb;

pub use error::ImageError;
pub use lag::{LagBuckets, LagMonitor, LagSnapshot};
pub use pool::{ImagePool, PoolConfig, PoolStats};
pub use thumb::{make_thumbnail, sniff_format, ImageLimits, Thumbnail};

/// The histogram type [`LagSnapshot::from_histogram`] summarises, re-exported so callers (the
/// benchmark) can keep their own latency histograms without naming the dependency.
pub use hdrhistogram::Histogram;
