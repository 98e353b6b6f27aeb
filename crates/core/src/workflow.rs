//! Workflows for task publishing: a title names a base model with any number
//! of LoRAs, a fixed sampler, step count and guidance, and the parameters a
//! client may set. Data from config (`workflow/default.toml` compiled in).

use crate::sampler::Sampler;
use crate::spec::LoraSpec;

/// One workflow a client can publish tasks to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// The name clients send as `title` (matched case-insensitively).
    pub title: String,
    /// Catalog id or alias of the base model.
    pub base_model: String,
    /// LoRAs applied on top of the base model, with scales.
    #[serde(default)]
    pub loras: Vec<LoraSpec>,
    /// Fixed sampler (`None`: the model's default).
    #[serde(default)]
    pub sampler: Option<Sampler>,
    /// Fixed step count.
    pub steps: u32,
    /// Fixed guidance scale.
    pub guidance: f32,
    /// Names of the `data.parameters` a client may set (`promptText`,
    /// `imageRatio`, `negativePromptText`, `seed`).
    #[serde(default = "default_parameters")]
    pub parameters: Vec<String>,
    /// Most images one task may ask for.
    #[serde(default = "default_max_images")]
    pub max_images: u32,
}

fn default_parameters() -> Vec<String> {
    vec!["promptText".into(), "imageRatio".into()]
}

fn default_max_images() -> u32 {
    10
}

impl Workflow {
    /// Whether a client may set parameter `name`.
    pub fn accepts(&self, name: &str) -> bool {
        self.parameters.iter().any(|p| p == name)
    }
}

#[derive(serde::Deserialize)]
struct WorkflowFile {
    #[serde(default)]
    workflows: Vec<Workflow>,
}

/// The workflows a deployment offers, looked up by title.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkflowSet {
    workflows: Vec<Workflow>,
}

/// The compiled-in workflows ("Image generation": FLUX.1-dev, 20 steps).
pub const DEFAULT_WORKFLOWS: &str = include_str!("workflow/default.toml");

impl WorkflowSet {
    /// The compiled-in workflows.
    pub fn builtin() -> Self {
        Self::from_toml(DEFAULT_WORKFLOWS).expect("the compiled-in workflows parse (tested)")
    }

    /// Parses a document of `[[workflows]]` tables.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: WorkflowFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut set = Self::default();
        for w in file.workflows {
            set.upsert(w);
        }
        Ok(set)
    }

    /// Adds a workflow or replaces the one with the same title.
    pub fn upsert(&mut self, workflow: Workflow) {
        match self.workflows.iter_mut().find(|w| w.title.eq_ignore_ascii_case(&workflow.title)) {
            Some(slot) => *slot = workflow,
            None => self.workflows.push(workflow),
        }
    }

    /// Looks up a workflow by title, case-insensitively.
    pub fn find(&self, title: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.title.eq_ignore_ascii_case(title.trim()))
    }

    /// All workflows in order.
    pub fn all(&self) -> &[Workflow] {
        &self.workflows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    #[test]
    fn builtin_workflows_parse_and_name_catalog_models() {
        let set = WorkflowSet::builtin();
        let w = set.find("image generation").unwrap();
        assert_eq!(w.steps, 20);
        let c = Catalog::builtin();
        assert_eq!(c.resolve(&w.base_model).unwrap().id, "FLUX.1-dev");
        for w in set.all() {
            assert!(c.resolve(&w.base_model).is_some(), "{}", w.title);
        }
    }

    #[test]
    fn config_workflows_carry_loras_and_replace_by_title() {
        let mut set = WorkflowSet::builtin();
        let extra = WorkflowSet::from_toml(
            r#"
            [[workflows]]
            title = "Image generation"
            base_model = "sdxl"
            loras = [{ name = "pixel.safetensors", scale = 0.8 }, { name = "detail", scale = 0.3 }]
            steps = 25
            guidance = 6.0
            "#,
        )
        .unwrap();
        for w in extra.all() {
            set.upsert(w.clone());
        }
        let w = set.find("Image generation").unwrap();
        assert_eq!((w.base_model.as_str(), w.loras.len(), w.loras[0].scale), ("sdxl", 2, 0.8));
        assert!(w.accepts("promptText") && !w.accepts("seed"));
    }
}
