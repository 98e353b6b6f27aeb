//! Prompt enhancement: the built-in, deterministic expansion used when a
//! client sets `prompt_enhancement` and no LLM channel is configured. It adds
//! style, lighting and detail terms chosen by a stable hash of the prompt, so
//! the same prompt is always rewritten the same way.

const STYLES: [&str; 6] =
    ["highly detailed digital illustration", "cinematic photograph", "fine art painting", "professional studio photograph", "concept art", "vivid editorial illustration"];
const LIGHTING: [&str; 6] = ["soft natural light", "golden hour lighting", "dramatic rim lighting", "moody ambient light", "bright diffuse daylight", "moonlit atmosphere"];
const DETAIL: [&str; 4] = ["sharp focus, intricate details", "rich colours, crisp textures", "balanced composition, depth of field", "clean lines, high contrast"];

/// FNV-1a: stable across platforms and releases, unlike `DefaultHasher`.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Expands a prompt with subject framing, style, lighting and detail terms.
pub fn enhance(prompt: &str) -> String {
    let subject = prompt.trim().trim_end_matches(['.', ',']);
    let h = stable_hash(subject);
    let pick = |xs: &[&'static str], shift: u32| xs[((h >> shift) % xs.len() as u64) as usize];
    format!("{subject}, {}, {}, {}, masterpiece quality", pick(&STYLES, 0), pick(&LIGHTING, 16), pick(&DETAIL, 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhancement_is_deterministic_and_keeps_the_subject() {
        let p = "an island near sea, with seagulls";
        assert_eq!(enhance(p), enhance(p));
        assert!(enhance(p).starts_with(p));
        assert!(enhance(p).len() > p.len() + 20);
    }
}
