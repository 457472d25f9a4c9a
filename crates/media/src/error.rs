//! What can go wrong with an image, in terms the sender can act on.

/// Why an image was not turned into a thumbnail.
///
/// Every variant has a stable machine-readable [`code`](ImageError::code) for wire protocols, and a
/// `Display` message written for the person who sent the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The upload is bigger than [`ImageLimits::max_bytes`](crate::ImageLimits::max_bytes).
    #[error("image is too large: {size} bytes, the limit is {max} bytes")]
    TooLarge {
        /// Size of the upload in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The header declares more pixels than
    /// [`ImageLimits::max_pixels`](crate::ImageLimits::max_pixels). Nothing was decoded.
    #[error("image is {width}x{height} pixels, the limit is {max_pixels} pixels")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit.
        max_pixels: u64,
    },
    /// Decoding would need more memory than
    /// [`ImageLimits::max_alloc`](crate::ImageLimits::max_alloc) (for example a 16-bit image close to
    /// the pixel limit). Shares the code `too-many-pixels`: to the sender it is the same problem.
    #[error("image is {width}x{height} pixels and needs more than {max_alloc} bytes to decode")]
    TooMuchMemory {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit in bytes.
        max_alloc: u64,
    },
    /// Not PNG, JPEG, GIF or WebP (judged by the leading bytes, never by a file name), or a variant
    /// of one of them that the decoder does not support.
    #[error("unsupported image format: {0}")]
    UnsupportedFormat(String),
    /// The bytes start like a supported format but do not decode: truncated, damaged or forged.
    #[error("corrupt {format} image: {reason}")]
    Corrupt {
        /// `png`, `jpeg`, `gif` or `webp`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The pool's job queue is full. Nothing was queued; the sender may try again later.
    #[error("the image service is busy, try again in a moment")]
    Busy,
    /// The pool is shutting down (or was dropped) and takes no more work.
    #[error("the server is shutting down, the image was not processed")]
    ShuttingDown,
}

impl ImageError {
    /// Stable, machine-readable code: `too-large`, `too-many-pixels`, `unsupported-format`,
    /// `corrupt-image`, `busy` or `shutting-down`.
    pub fn code(&self) -> &'static str {
        match self {
            ImageError::TooLarge { .. } => "too-large",
            ImageError::TooManyPixels { .. } | ImageError::TooMuchMemory { .. } => {
                "too-many-pixels"
            }
            ImageError::UnsupportedFormat(_) => "unsupported-format",
            ImageError::Corrupt { .. } => "corrupt-image",
            ImageError::Busy => "busy",
            ImageError::ShuttingDown => "shutting-down",
        }
    }

    /// Whether the same image might succeed later (`busy`); every other error is about the image
    /// itself or the server going away, and retrying the same bytes will not help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ImageError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let cases = [
            (ImageError::TooLarge { size: 2, max: 1 }, "too-large"),
            (
                ImageError::TooManyPixels {
                    width: 1,
                    height: 1,
                    max_pixels: 0,
                },
                "too-many-pixels",
            ),
            (
                ImageError::TooMuchMemory {
                    width: 1,
                    height: 1,
                    max_alloc: 0,
                },
                "too-many-pixels",
            ),
            (
                ImageError::UnsupportedFormat("x".into()),
                "unsupported-format",
            ),
            (
                ImageError::Corrupt {
                    format: "png",
                    reason: "x".into(),
                },
                "corrupt-image",
            ),
            (ImageError::Busy, "busy"),
            (ImageError::ShuttingDown, "shutting-down"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn messages_read_well() {
        let e = ImageError::TooLarge {
            size: 9_000_000,
            max: 8_388_608,
        };
        assert_eq!(
            e.to_string(),
            "image is too large: 9000000 bytes, the limit is 8388608 bytes"
        );
        let e = ImageError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            max_pixels: 40_000_000,
        };
        assert_eq!(
            e.to_string(),
            "image is 100000x100000 pixels, the limit is 40000000 pixels"
        );
    }
}
