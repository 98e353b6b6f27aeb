//! Shared tiny model folders (written once per test binary).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use imagegate_engine::fixtures::{LoraLayout, TinySd, TinySdVariant, write_tiny_lora, write_tiny_sd, write_tiny_sdxl};

/// A models folder holding `tiny-sd15` (epsilon), `tiny-sd21-v` (v-prediction,
/// SD 2.x layout), `tiny-sd15-fp16` (fp16 weights), `tiny-sdxl` and a kohya
/// LoRA for `tiny-sd15` at `loras/style.safetensors`.
pub fn models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Kept for the whole test run; removed with the OS temp folder.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        write_tiny_sd(&dir.join("tiny-sd15"), &TinySd::default()).expect("write tiny sd15");
        let v = TinySd { variant: TinySdVariant::Sd21, prediction_type: "v_prediction", seed: 1, ..TinySd::default() };
        write_tiny_sd(&dir.join("tiny-sd21-v"), &v).expect("write tiny sd21");
        let half = TinySd { dtype: candle_core::DType::F16, seed: 2, ..TinySd::default() };
        write_tiny_sd(&dir.join("tiny-sd15-fp16"), &half).expect("write tiny fp16");
        write_tiny_sdxl(&dir.join("tiny-sdxl"), candle_core::DType::F32, 3).expect("write tiny sdxl");
        std::fs::create_dir_all(dir.join("loras")).expect("loras dir");
        write_tiny_lora(&dir.join("loras/style.safetensors"), &dir.join("tiny-sd15"), LoraLayout::Kohya, 4, 7).expect("write tiny lora");
        dir
    })
}

/// The folder of one tiny model.
pub fn model(id: &str) -> PathBuf {
    models_dir().join(id)
}
