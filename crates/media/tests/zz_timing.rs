mod common;
use std::time::Instant;
#[test]
fn timing() {
    for (w,h) in [(2000,2000),(3000,3000),(4000,3000)] {
        for (name, b) in [("png", common::png(w,h)), ("jpeg", common::jpeg(w,h)), ("noisepng", common::encode(&common::noise(w,h,1), image::ImageFormat::Png))] {
            let t = Instant::now();
            let r = volna_media::make_thumbnail(&b, &volna_media::ImageLimits{max_bytes: 64<<20, ..Default::default()});
            eprintln!("{name} {w}x{h} {} bytes: {:?} ok={}", b.len(), t.elapsed(), r.is_ok());
        }
    }
}
