//! Images made on the spot with the `image` crate's encoders, and hand-made headers for the hostile
//! cases. Nothing is read from disk.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::Cursor;

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};

/// An opaque image with a smooth gradient and some structure (compresses like a photo, not like noise).
pub(crate) fn rgb(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            ((x ^ y) & 0xFF) as u8,
        ])
    }))
}

/// An image whose left half is fully transparent.
pub(crate) fn rgba_with_transparency(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
        let alpha = if x < width / 2 { 0 } else { 255 };
        image::Rgba([(x & 0xFF) as u8, (y & 0xFF) as u8, 128, alpha])
    }))
}

/// Pseudo-random pixels: expensive to decode per byte, so a few hundred KiB keep a worker busy.
pub(crate) fn noise(width: u32, height: u32, seed: u32) -> DynamicImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let b = state.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    }))
}

/// `img` encoded in `format` by the `image` crate.
pub(crate) fn encode(img: &DynamicImage, format: ImageFormat) -> Bytes {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    Bytes::from(out.into_inner())
}

/// An [`rgb`] image of `width x height` as PNG; `jpeg`, `gif` and `webp` below likewise.
pub(crate) fn png(width: u32, height: u32) -> Bytes {
    encode(&rgb(width, height), ImageFormat::Png)
}

pub(crate) fn jpeg(width: u32, height: u32) -> Bytes {
    encode(&rgb(width, height), ImageFormat::Jpeg)
}

pub(crate) fn gif(width: u32, height: u32) -> Bytes {
    encode(&rgb(width, height), ImageFormat::Gif)
}

pub(crate) fn webp(width: u32, height: u32) -> Bytes {
    encode(&rgb(width, height), ImageFormat::WebP)
}

/// Decode a thumbnail's bytes back, checking they are the format its MIME type says.
pub(crate) fn decode_thumb(bytes: &[u8], mime: &str) -> DynamicImage {
    let format = match mime {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        other => panic!("unexpected thumbnail type {other}"),
    };
    image::load_from_memory_with_format(bytes, format).expect("thumbnail decodes")
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// A well-formed PNG header (valid CRCs) that claims `width x height` RGB pixels, followed by a
/// tiny IDAT. A decoder that trusted it would allocate `width * height * 3` bytes.
pub(crate) fn png_bomb_header(width: u32, height: u32) -> Bytes {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, adaptive, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    Bytes::from(out)
}

/// A GIF whose logical screen is `width x height` (at most 65535 each), holding one 1x1 frame.
pub(crate) fn gif_bomb_header(width: u16, height: u16) -> Bytes {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    // Global palette of 2 colours (white, black), background 0, aspect 0.
    out.extend_from_slice(&[0x80, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00]);
    // Image descriptor: at (0, 0), 1x1, no local palette; then LZW data for one pixel.
    out.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0x00]);
    out.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00]);
    out.push(0x3B); // trailer
    Bytes::from(out)
}

/// A lossless WebP (VP8L) header claiming `width x height` (at most 16383 each), with no image data.
pub(crate) fn webp_bomb_header(width: u32, height: u32) -> Bytes {
    let bits: u32 = (width - 1) | ((height - 1) << 14); // alpha 0, version 0
    let mut vp8l = vec![0x2F];
    vp8l.extend_from_slice(&bits.to_le_bytes());
    vp8l.extend_from_slice(&[0; 11]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(b"VP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    Bytes::from(out)
}

/// A JPEG of `width x height` stored pixels whose EXIF says "rotate 90° clockwise to display"
/// (orientation 6), as phone cameras write them.
pub(crate) fn jpeg_rotated_90(width: u32, height: u32) -> Bytes {
    use image::ImageEncoder;
    // A big-endian TIFF header and one IFD entry: tag 0x0112 (Orientation), SHORT, 1 value, 6.
    let exif = vec![
        b'M', b'M', 0, 42, 0, 0, 0, 8, // header, IFD at offset 8
        0, 1, // one entry
        0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, // Orientation = 6
        0, 0, 0, 0, // no next IFD
    ];
    let rgb = rgb(width, height).to_rgb8();
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    encoder.set_exif_metadata(exif).expect("JPEG takes EXIF");
    encoder
        .write_image(rgb.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("encode");
    Bytes::from(out)
}

/// A pool of `workers` threads and `queue` waiting slots, default limits.
pub(crate) fn pool(workers: usize, queue: usize) -> volna_media::ImagePool {
    volna_media::ImagePool::new(volna_media::PoolConfig {
        workers,
        queue,
        limits: volna_media::ImageLimits::default(),
    })
    .expect("worker threads")
}

/// Occupies one worker until the returned sender is used (or dropped). Returns once the worker is
/// inside the job, so the queue is empty again.
pub(crate) async fn occupy(
    pool: &volna_media::ImagePool,
) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let task = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.run(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
            .await
            .expect("blocker runs");
        }
    });
    started_rx.await.expect("worker picked up the blocker");
    (release_tx, task)
}

/// Polls `cond` every 10 ms for up to 5 s.
pub(crate) async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
