//! Stability's `style_preset` names as prompt templates: each preset wraps
//! the prompt in the terms that steer a model towards the style and adds a
//! negative prompt. Data, not magic: the same templates any client could type.

/// One style preset: `{prompt}` in `positive` is replaced by the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StylePreset {
    /// Stability's name (`3d-model`, `anime`, …).
    pub name: &'static str,
    /// Template of the positive prompt.
    pub positive: &'static str,
    /// Negative prompt the style adds.
    pub negative: &'static str,
}

/// The seventeen presets Stability v1 documents, in its order.
pub const STYLE_PRESETS: [StylePreset; 17] = [
    StylePreset {
        name: "3d-model",
        positive: "professional 3d model of {prompt}, octane render, highly detailed, volumetric, dramatic lighting",
        negative: "ugly, deformed, noisy, low poly, blurry, painting",
    },
    StylePreset {
        name: "analog-film",
        positive: "analog film photo of {prompt}, faded film, desaturated, 35mm photo, grainy, vignette, vintage, Kodachrome, Lomography, stained, highly detailed, found footage",
        negative: "painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, disfigured",
    },
    StylePreset {
        name: "anime",
        positive: "anime artwork of {prompt}, anime style, key visual, vibrant, studio anime, highly detailed",
        negative: "photo, deformed, black and white, realism, disfigured, low contrast",
    },
    StylePreset {
        name: "cinematic",
        positive: "cinematic film still of {prompt}, shallow depth of field, vignette, highly detailed, high budget, bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
        negative: "anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, mutated, ugly, disfigured",
    },
    StylePreset {
        name: "comic-book",
        positive: "comic of {prompt}, graphic illustration, comic art, graphic novel art, vibrant, highly detailed",
        negative: "photograph, deformed, glitch, noisy, realistic, stock photo",
    },
    StylePreset {
        name: "digital-art",
        positive: "concept art of {prompt}, digital artwork, illustrative, painterly, matte painting, highly detailed",
        negative: "photo, photorealistic, realism, ugly",
    },
    StylePreset { name: "enhance", positive: "breathtaking {prompt}, award-winning, professional, highly detailed", negative: "ugly, deformed, noisy, blurry, distorted, grainy" },
    StylePreset {
        name: "fantasy-art",
        positive: "ethereal fantasy concept art of {prompt}, magnificent, celestial, ethereal, painterly, epic, majestic, magical, fantasy art, cover art, dreamy",
        negative: "photographic, realistic, realism, 35mm film, dslr, cropped, frame, text, deformed, glitch, noise, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, sloppy, duplicate, mutated, black and white",
    },
    StylePreset {
        name: "isometric",
        positive: "isometric style {prompt}, vibrant, beautiful, crisp, detailed, ultra detailed, intricate",
        negative: "deformed, mutated, ugly, disfigured, blur, blurry, noise, noisy, realistic, photographic",
    },
    StylePreset {
        name: "line-art",
        positive: "line art drawing of {prompt}, professional, sleek, modern, minimalist, graphic, line art, vector graphics",
        negative: "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic",
    },
    StylePreset {
        name: "low-poly",
        positive: "low-poly style {prompt}, low-poly game art, polygon mesh, jagged, blocky, wireframe edges, centered composition",
        negative: "noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo",
    },
    StylePreset {
        name: "modeling-compound",
        positive: "play-doh style {prompt}, sculpture, clay art, centered composition, Claymation",
        negative: "sloppy, messy, grainy, highly detailed, ultra textured, photo",
    },
    StylePreset {
        name: "neon-punk",
        positive: "neonpunk style {prompt}, cyberpunk, vaporwave, neon, vibes, vibrant, stunningly beautiful, crisp, detailed, sleek, ultramodern, magenta highlights, dark purple shadows, high contrast, cinematic, ultra detailed, intricate, professional",
        negative: "painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, disfigured",
    },
    StylePreset {
        name: "origami",
        positive: "origami style {prompt}, paper art, pleated paper, folded, origami art, pleats, cut and fold, centered composition",
        negative: "noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo",
    },
    StylePreset {
        name: "photographic",
        positive: "cinematic photo of {prompt}, 35mm photograph, film, bokeh, professional, 4k, highly detailed",
        negative: "drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, deformed, ugly",
    },
    StylePreset {
        name: "pixel-art",
        positive: "pixel-art {prompt}, low-res, blocky, pixel art style, 8-bit graphics",
        negative: "sloppy, messy, blurry, noisy, highly detailed, ultra textured, photo, realistic",
    },
    StylePreset {
        name: "tile-texture",
        positive: "{prompt}, seamless tileable texture, top-down, flat, repeating pattern, even lighting",
        negative: "perspective, shadows, vignette, border, frame, text, watermark, seams",
    },
];

/// Looks up a preset by its Stability name (case-insensitive).
pub fn style_preset(name: &str) -> Option<&'static StylePreset> {
    STYLE_PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name.trim()))
}

/// The preset names, comma-separated, for error messages.
pub fn style_preset_names() -> String {
    STYLE_PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl StylePreset {
    /// The prompt wrapped in this style.
    pub fn apply(&self, prompt: &str) -> String {
        self.positive.replace("{prompt}", prompt.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_keeps_the_prompt() {
        for p in &STYLE_PRESETS {
            assert!(p.positive.contains("{prompt}"), "{}", p.name);
            assert!(p.apply("a red fox").contains("a red fox"));
        }
        assert_eq!(style_preset("ANIME").unwrap().name, "anime");
        assert!(style_preset("watercolour").is_none());
    }
}
