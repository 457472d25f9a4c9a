//! Hostile and broken uploads: each is a clear, typed error, found as early as possible.

mod common;

use std::time::{Duration, Instant};

use volna_media::{make_thumbnail, ImageError, ImageLimits};

fn err(bytes: &[u8]) -> ImageError {
    err_with(bytes, &ImageLimits::default())
}

fn err_with(bytes: &[u8], limits: &ImageLimits) -> ImageError {
    match make_thumbnail(bytes, limits) {
        Ok(t) => panic!(
            "expected an error, got a {}x{} thumbnail",
            t.width, t.height
        ),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

#[test]
fn oversized_upload_is_too_large() {
    let limits = ImageLimits {
        max_bytes: 1000,
        ..ImageLimits::default()
    };
    let bytes = common::png(200, 200);
    assert!(bytes.len() > 1000);
    let e = err_with(&bytes, &limits);
    assert_eq!(e.code(), "too-large");
    assert_eq!(
        e,
        ImageError::TooLarge {
            size: bytes.len(),
            max: 1000
        }
    );
    // Checked before anything else, even for bytes that are not an image at all.
    assert_eq!(err_with(&vec![0u8; 1001], &limits).code(), "too-large");
}

#[test]
fn default_size_limit_is_8_mib() {
    let mut bytes = common::png(4, 4).to_vec();
    bytes.resize(8 * 1024 * 1024 + 1, 0);
    assert_eq!(err(&bytes).code(), "too-large");
}

#[test]
fn non_image_bytes_are_unsupported() {
    for bytes in [
        &b""[..],
        b"hello, this is a text file\n",
        b"%PDF-1.7\n",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", // BMP: a real image format, but not accepted
        b"RIFF\x24\0\0\0WAVEfmt ",         // RIFF but not WebP
        b"\x89PN",                         // too short to be PNG
    ] {
        let e = err(bytes);
        assert_eq!(e.code(), "unsupported-format", "{bytes:?}: {e}");
    }
}

#[test]
fn a_name_cannot_make_bytes_an_image() {
    // The format is judged by content only: there is no API that takes a file name or MIME type,
    // and bytes that merely claim to be a PNG in text are still unsupported.
    assert_eq!(err(b"image.png").code(), "unsupported-format");
}

#[test]
fn truncated_png_is_corrupt() {
    let bytes = common::png(300, 300);
    let e = err(&bytes[..bytes.len() / 2]);
    assert_eq!(e.code(), "corrupt-image", "{e}");
    assert!(e.to_string().starts_with("corrupt png image: "), "{e}");
}

#[test]
fn damaged_png_is_corrupt() {
    let mut bytes = common::png(300, 300).to_vec();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5A;
    }
    assert_eq!(err(&bytes).code(), "corrupt-image");
}

#[test]
fn magic_bytes_then_garbage_is_corrupt() {
    for magic in [
        &b"\x89PNG\r\n\x1a\n"[..],
        &[0xFF, 0xD8, 0xFF, 0xE0],
        b"GIF89a",
        b"RIFF\x20\0\0\0WEBPVP8 ",
    ] {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&[0x03; 64]);
        let e = err(&bytes);
        assert_eq!(e.code(), "corrupt-image", "{magic:?}: {e}");
    }
}

#[test]
fn truncated_gif_and_webp_are_corrupt() {
    for bytes in [common::gif(300, 300), common::webp(300, 300)] {
        let e = err(&bytes[..bytes.len() / 3]);
        assert_eq!(e.code(), "corrupt-image", "{e}");
    }
}

#[test]
fn jpeg_cut_in_the_header_is_corrupt() {
    let bytes = common::jpeg(300, 300);
    let e = err(&bytes[..40]);
    assert_eq!(e.code(), "corrupt-image", "{e}");
}

#[test]
fn jpeg_cut_in_the_scan_decodes_as_far_as_it_goes() {
    // The JPEG decoder (zune-jpeg via `image`) is lenient, like browsers: a photo cut off mid-scan
    // decodes with the missing part filled in. Pinned here so a change of behaviour is noticed.
    let bytes = common::jpeg(300, 300);
    let t = make_thumbnail(&bytes[..bytes.len() * 2 / 3], &ImageLimits::default())
        .expect("lenient JPEG decoding");
    assert_eq!((t.width, t.height), (300, 300));
}

#[test]
fn png_bomb_is_rejected_from_the_header() {
    // 100000 x 100000 RGB would be 30 GB. The header is read, the pixel count compared, and nothing
    // else happens: no allocation of that size (the test would abort if there were one), and fast.
    let bytes = common::png_bomb_header(100_000, 100_000);
    assert!(bytes.len() < 100);
    let started = Instant::now();
    let e = err(&bytes);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        e,
        ImageError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            max_pixels: 40_000_000
        }
    );
    assert_eq!(e.code(), "too-many-pixels");
}

#[test]
fn gif_and_webp_bombs_are_rejected_from_the_header() {
    let e = err(&common::gif_bomb_header(65_535, 65_535));
    assert!(
        matches!(
            e,
            ImageError::TooManyPixels {
                width: 65_535,
                height: 65_535,
                ..
            }
        ),
        "{e:?}"
    );
    let e = err(&common::webp_bomb_header(16_000, 16_000));
    assert!(
        matches!(
            e,
            ImageError::TooManyPixels {
                width: 16_000,
                height: 16_000,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn pixel_limit_applies_to_real_images() {
    let limits = ImageLimits {
        max_pixels: 100 * 100,
        ..ImageLimits::default()
    };
    assert!(make_thumbnail(&common::png(100, 100), &limits).is_ok());
    let e = err_with(&common::jpeg(101, 100), &limits);
    assert_eq!(
        e,
        ImageError::TooManyPixels {
            width: 101,
            height: 100,
            max_pixels: 10_000
        }
    );
}

#[test]
fn memory_limit_is_a_second_guard() {
    // Within the pixel limit, but the decoded buffer (500 * 500 * 3 bytes) exceeds max_alloc.
    let limits = ImageLimits {
        max_alloc: 100_000,
        ..ImageLimits::default()
    };
    let e = err_with(&common::png(500, 500), &limits);
    assert_eq!(
        e,
        ImageError::TooMuchMemory {
            width: 500,
            height: 500,
            max_alloc: 100_000
        }
    );
    assert_eq!(e.code(), "too-many-pixels");
}
