//! `imagegate generate` with an init image (image-to-image) and a mask
//! (inpainting), on tiny models written by the test.

use std::path::Path;

use imagegate_engine::fixtures::{TinySd, write_tiny_sd};

use crate::server::imagegate;

fn write_png(path: &Path, img: image::DynamicImage) {
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

/// The PNG's A1111 `parameters` text.
fn parameters(path: &Path) -> String {
    let reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).read_info().unwrap();
    reader.info().uncompressed_latin1_text.iter().find(|t| t.keyword == "parameters").map(|t| t.text.clone()).unwrap_or_default()
}

#[test]
fn generate_takes_an_init_image_and_a_mask() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    write_tiny_sd(&models.join("tiny-sd"), &TinySd { seed: 21, ..TinySd::default() }).unwrap();
    write_tiny_sd(&models.join("tiny-inpaint"), &TinySd { seed: 22, inpaint: true, ..TinySd::default() }).unwrap();
    let init = dir.path().join("init.png");
    write_png(&init, image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([(x * 6) as u8, (y * 6) as u8, 90])).into());
    let mask = dir.path().join("mask.png");
    write_png(&mask, image::GrayImage::from_fn(40, 40, |x, _| image::Luma([if x < 20 { 255 } else { 0 }])).into());
    let run = |model: &str, extra: &[&str], out: &Path| {
        imagegate()
            .arg("--models-dir")
            .arg(&models)
            .args(["generate", "a cat", "--model", model, "--size", "64x64", "--steps", "2", "--seed", "5", "--init-image"])
            .arg(&init)
            .args(extra)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };

    let i2i = dir.path().join("i2i.png");
    let done = run("tiny-sd", &["--strength", "0.5"], &i2i);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(parameters(&i2i).ends_with("Denoising strength: 0.5"), "{}", parameters(&i2i));

    let inpainted = dir.path().join("inpainted.png");
    let done = run("tiny-inpaint", &["--mask", mask.to_str().unwrap()], &inpainted);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let img = image::open(&inpainted).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));

    // A mask on a model that cannot inpaint fails and says why.
    let refused = run("tiny-sd", &["--mask", mask.to_str().unwrap()], &dir.path().join("no.png"));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("mask") && stderr.contains("inpainting checkpoint"), "{stderr}");
}
