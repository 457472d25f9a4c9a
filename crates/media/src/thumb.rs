//! The synchronous, CPU-bound part: sniff, check limits, decode, shrink, encode.
//!
//! [`make_thumbnail`] is what the pool's workers run. It never touches tokio, so it can also be called
//! inline (the benchmark does that on purpose, to show what blocking the event loop costs).

use std::io::Cursor;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat, ImageReader,
};

use crate::ImageError;

/// What an upload may cost. Checked in order: bytes, format, pixels (from the header, before any
/// decoding), then memory (before the pixel buffer is allocated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest accepted upload, in bytes. Defaults to 8 MiB.
    pub max_bytes: usize,
    /// Largest accepted `width * height`, read from the header before decoding. This is what stops a
    /// decompression bomb (a few KiB of PNG that inflates to gigabytes). Defaults to 40 million.
    pub max_pixels: u64,
    /// Most memory the decoder may allocate for one image (`image::Limits::max_alloc`), a second guard
    /// behind `max_pixels`. Defaults to 256 MiB: a 40-megapixel image in 8-bit RGBA (160 MB) or
    /// 16-bit RGB (240 MB) fits; a 16-bit RGBA one that large does not.
    pub max_alloc: u64,
    /// Longest side of the thumbnail, in pixels. Smaller images keep their size. Defaults to 256.
    pub thumb_side: u32,
    /// JPEG quality of the thumbnail, 1..=100. Defaults to 80.
    pub jpeg_quality: u8,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_bytes: 8 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_alloc: 256 * 1024 * 1024,
            thumb_side: 256,
            jpeg_quality: 80,
        }
    }
}

/// A decoded image's thumbnail, ready to broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Format of the upload: `png`, `jpeg`, `gif` or `webp`.
    pub format_in: &'static str,
    /// Width of the original image as displayed (after its EXIF orientation, if any).
    pub width: u32,
    /// Height of the original image as displayed.
    pub height: u32,
    /// The encoded thumbnail. Always freshly encoded by us: no byte of the upload passes through.
    pub thumb: Bytes,
    /// `image/png` when the thumbnail has transparent pixels, `image/jpeg` otherwise.
    pub thumb_mime: &'static str,
    /// Thumbnail width; the longest side is at most [`ImageLimits::thumb_side`].
    pub thumb_width: u32,
    /// Thumbnail height.
    pub thumb_height: u32,
}

/// The formats volna accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    Gif,
    WebP,
}

impl Format {
    /// Judge the format by its magic bytes. A client-given file name or MIME type is never trusted.
    fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Format::Gif)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Format::WebP)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Gif => "gif",
            Format::WebP => "webp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Png => ImageFormat::Png,
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Gif => ImageFormat::Gif,
            Format::WebP => ImageFormat::WebP,
        }
    }
}

/// `png`, `jpeg`, `gif` or `webp` if `bytes` start like one of them, judged by magic bytes only.
/// Cheap: callers can use it to tell an image attachment from any other binary frame.
pub fn sniff_format(bytes: &[u8]) -> Option<&'static str> {
    Format::sniff(bytes).map(Format::name)
}

/// The checks that need no decoding: size and magic bytes. The pool runs these on the caller's
/// thread before queueing, so a non-image never takes a queue slot.
/// Returns the format's name.
pub(crate) fn precheck(bytes: &[u8], limits: &ImageLimits) -> Result<&'static str, ImageError> {
    check_size(bytes, limits)?;
    sniff_or_reject(bytes).map(Format::name)
}

fn check_size(bytes: &[u8], limits: &ImageLimits) -> Result<(), ImageError> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    Ok(())
}

fn sniff_or_reject(bytes: &[u8]) -> Result<Format, ImageError> {
    Format::sniff(bytes).ok_or_else(|| {
        ImageError::UnsupportedFormat("not a PNG, JPEG, GIF or WebP image".to_owned())
    })
}

/// Decode `bytes` and make a thumbnail, synchronously, on the calling thread.
///
/// CPU-bound: from a millisecond for a small PNG to hundreds for a large photo. Do not call it on
/// an event-loop thread; use [`ImagePool::thumbnail`](crate::ImagePool::thumbnail).
///
/// GIF and WebP animations give the thumbnail of their first frame.
pub fn make_thumbnail(bytes: &[u8], limits: &ImageLimits) -> Result<Thumbnail, ImageError> {
    check_size(bytes, limits)?;
    let format = sniff_or_reject(bytes)?;
    let corrupt = |e: image::ImageError| map_decode_error(format, e);

    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(limits.max_alloc);

    // `into_decoder` parses the header only (it is what `ImageReader::into_dimensions` does inside);
    // keeping the decoder lets us check the pixel count and then decode from the same parse.
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.limits(decode_limits.clone());
    let mut decoder = reader.into_decoder().map_err(corrupt)?;

    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    // The pixel buffer counts against `max_alloc` before it is allocated (what `ImageReader::decode`
    // does too), so a header that passes `max_pixels` but needs too many bytes still fails fast.
    if decode_limits.reserve(decoder.total_bytes()).is_err() {
        return Err(ImageError::TooMuchMemory {
            width,
            height,
            max_alloc: limits.max_alloc,
        });
    }
    decoder.set_limits(decode_limits).map_err(corrupt)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);

    let image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => ImageError::TooMuchMemory {
            width,
            height,
            max_alloc: limits.max_alloc,
        },
        e => corrupt(e),
    })?;

    let (thumb_width, thumb_height) = fit(width, height, limits.thumb_side);
    let mut small = if (thumb_width, thumb_height) == (width, height) {
        image
    } else {
        image.thumbnail_exact(thumb_width, thumb_height)
    };
    // Rotate the small image, not the large one: same result, a fraction of the work and memory.
    small.apply_orientation(orientation);
    let (width, height) = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };

    let (thumb, thumb_mime) = encode(&small, limits.jpeg_quality)?;
    Ok(Thumbnail {
        format_in: format.name(),
        width,
        height,
        thumb: Bytes::from(thumb),
        thumb_mime,
        thumb_width: small.width(),
        thumb_height: small.height(),
    })
}

/// The size that fits `width x height` into a `side x side` box, keeping the aspect ratio, never
/// enlarging, and never reaching zero.
fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    let side = side.max(1);
    if width <= side && height <= side {
        return (width, height);
    }
    let scale = |short: u32, long: u32| -> u32 {
        let v = (u64::from(short) * u64::from(side) + u64::from(long) / 2) / u64::from(long);
        v.clamp(1, u64::from(side)) as u32
    };
    if width >= height {
        (side, scale(height, width))
    } else {
        (scale(width, height), side)
    }
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// PNG when some pixel is actually transparent (a GIF decodes to RGBA even when fully opaque, and
/// JPEG is far smaller for opaque content), JPEG otherwise.
fn encode(img: &DynamicImage, jpeg_quality: u8) -> Result<(Vec<u8>, &'static str), ImageError> {
    let encode_err = |e: image::ImageError| ImageError::Corrupt {
        format: "thumbnail",
        reason: format!("could not encode the thumbnail: {e}"),
    };
    let mut out = Vec::with_capacity(16 * 1024);
    let transparent = img.color().has_alpha() && {
        let rgba = img.to_rgba8();
        rgba.pixels().any(|p| p.0[3] != u8::MAX)
    };
    if transparent {
        let rgba = img.to_rgba8();
        PngEncoder::new(&mut out)
            .write_image(
                rgba.as_raw(),
                rgba.width(),
                rgba.height(),
                ExtendedColorType::Rgba8,
            )
            .map_err(encode_err)?;
        Ok((out, "image/png"))
    } else {
        let rgb = img.to_rgb8();
        JpegEncoder::new_with_quality(&mut out, jpeg_quality.clamp(1, 100))
            .write_image(
                rgb.as_raw(),
                rgb.width(),
                rgb.height(),
                ExtendedColorType::Rgb8,
            )
            .map_err(encode_err)?;
        Ok((out, "image/jpeg"))
    }
}

fn map_decode_error(format: Format, e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Unsupported(u) => {
            ImageError::UnsupportedFormat(format!("this {} variant: {u}", format.name()))
        }
        e => ImageError::Corrupt {
            format: format.name(),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic_bytes_only() {
        assert_eq!(sniff_format(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(sniff_format(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpeg"));
        assert_eq!(sniff_format(b"GIF89a...."), Some("gif"));
        assert_eq!(sniff_format(b"GIF87a...."), Some("gif"));
        assert_eq!(sniff_format(b"RIFF\x10\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(sniff_format(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff_format(b"BM\x3a\0\0\0"), None, "BMP is not accepted");
        assert_eq!(sniff_format(b"<svg xmlns="), None);
        assert_eq!(sniff_format(b""), None);
        assert_eq!(sniff_format(b"\x89PN"), None);
    }

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(1000, 500, 256), (256, 128));
        assert_eq!(fit(500, 1000, 256), (128, 256));
        assert_eq!(fit(256, 256, 256), (256, 256));
        assert_eq!(fit(10, 20, 256), (10, 20));
        assert_eq!(fit(10_000, 1, 256), (256, 1));
        assert_eq!(fit(1, 10_000, 256), (1, 256));
        assert_eq!(fit(300, 200, 0), (1, 1));
        assert_eq!(fit(1920, 1080, 256), (256, 144));
    }
}
