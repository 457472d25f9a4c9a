//! Every accepted format becomes a thumbnail of the right size, shape and type.

mod common;

use image::{GenericImageView, ImageFormat};
use volna_media::{make_thumbnail, ImageLimits, Thumbnail};

fn thumb(bytes: &[u8]) -> Thumbnail {
    make_thumbnail(bytes, &ImageLimits::default()).expect("thumbnail")
}

/// The thumbnail's header says what the struct says, and the shape matches the original's.
fn check(t: &Thumbnail, format_in: &str, width: u32, height: u32, thumb: (u32, u32)) {
    assert_eq!(t.format_in, format_in);
    assert_eq!((t.width, t.height), (width, height));
    assert_eq!((t.thumb_width, t.thumb_height), thumb);
    let decoded = common::decode_thumb(&t.thumb, t.thumb_mime);
    assert_eq!(decoded.dimensions(), thumb, "encoded size matches");
    let (ratio_in, ratio_out) = (
        width as f64 / height as f64,
        thumb.0 as f64 / thumb.1 as f64,
    );
    // Rounding one side to whole pixels moves the ratio by at most one pixel's worth.
    let tolerance = 1.0 / thumb.0.min(thumb.1) as f64 * ratio_in.max(1.0) + 1e-9;
    assert!(
        (ratio_in - ratio_out).abs() <= tolerance,
        "aspect {ratio_in} became {ratio_out}"
    );
}

#[test]
fn png_landscape() {
    let t = thumb(&common::png(800, 600));
    check(&t, "png", 800, 600, (256, 192));
    assert_eq!(
        t.thumb_mime, "image/jpeg",
        "opaque PNG gives a JPEG thumbnail"
    );
}

#[test]
fn jpeg_portrait() {
    let t = thumb(&common::jpeg(600, 1000));
    check(&t, "jpeg", 600, 1000, (154, 256));
    assert_eq!(t.thumb_mime, "image/jpeg");
}

#[test]
fn gif_opaque_becomes_jpeg() {
    let t = thumb(&common::gif(400, 300));
    check(&t, "gif", 400, 300, (256, 192));
    assert_eq!(
        t.thumb_mime, "image/jpeg",
        "a GIF decodes to RGBA, but with no transparent pixel it is encoded as JPEG"
    );
}

#[test]
fn webp_lossless() {
    let bytes = common::webp(1024, 512);
    assert_eq!(&bytes[8..12], b"WEBP");
    let t = thumb(&bytes);
    check(&t, "webp", 1024, 512, (256, 128));
}

#[test]
fn transparency_is_kept_as_png() {
    for format in [ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif] {
        let bytes = common::encode(&common::rgba_with_transparency(512, 512), format);
        let t = thumb(&bytes);
        assert_eq!(t.thumb_mime, "image/png", "{format:?}");
        let decoded = common::decode_thumb(&t.thumb, t.thumb_mime).to_rgba8();
        assert_eq!(decoded.dimensions(), (256, 256));
        assert_eq!(decoded.get_pixel(10, 128).0[3], 0, "left half transparent");
        assert_eq!(decoded.get_pixel(250, 128).0[3], 255, "right half opaque");
    }
}

#[test]
fn small_images_are_not_enlarged() {
    let t = thumb(&common::png(40, 30));
    check(&t, "png", 40, 30, (40, 30));
    let t = thumb(&common::jpeg(1, 1));
    check(&t, "jpeg", 1, 1, (1, 1));
}

#[test]
fn extreme_aspect_ratio_keeps_one_pixel() {
    let t = thumb(&common::png(4000, 3));
    assert_eq!((t.thumb_width, t.thumb_height), (256, 1));
    let t = thumb(&common::png(3, 4000));
    assert_eq!((t.thumb_width, t.thumb_height), (1, 256));
}

#[test]
fn thumb_side_is_configurable() {
    let limits = ImageLimits {
        thumb_side: 64,
        ..ImageLimits::default()
    };
    let t = make_thumbnail(&common::png(300, 200), &limits).unwrap();
    check(&t, "png", 300, 200, (64, 43));
}

#[test]
fn thumbnail_is_reencoded_not_copied() {
    // Even when no resize is needed, the upload's bytes never pass through (no metadata, no
    // trailing payload smuggled to the other members).
    let mut bytes = common::png(32, 32).to_vec();
    bytes.extend_from_slice(b"trailing payload after IEND");
    let t = thumb(&bytes);
    assert!(!t
        .thumb
        .windows(b"trailing payload".len())
        .any(|w| w == b"trailing payload"));
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 600 wide and 300 high, displayed turned a quarter: 300 wide and 600 high.
    let t = thumb(&common::jpeg_rotated_90(600, 300));
    check(&t, "jpeg", 300, 600, (128, 256));
}
